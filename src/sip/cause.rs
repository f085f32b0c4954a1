//! Hangup causes: the mapping between SIP final responses and Q.850 cause
//! codes, and the human-readable text of each cause, as Asterisk 22 has them.
//!
//! This module owns three pure tables and nothing else (no I/O, no state):
//!
//! - [`cause_of_status`]: the Q.850 cause a channel gets when its outgoing
//!   INVITE ends with a non-2xx final response. Follows
//!   `ast_sip_hangup_sip2cause()` in `res/res_pjsip.c` (called from
//!   `chan_pjsip_session_end()` / `chan_pjsip_incoming_response_update_cause()`
//!   in `channels/chan_pjsip.c`), including its class-based default arms.
//! - [`status_of_cause`]: the final response sent when an unanswered incoming
//!   call is hung up with a cause. Follows `hangup_cause2sip()` in
//!   `channels/chan_pjsip.c`, plus the fallback in
//!   `ast_sip_session_terminate()` (`res/res_pjsip_session.c`), which turns
//!   its "no match" answer of 0 into 603 Decline.
//! - [`cause_text`]: `ast_cause2str()` in `main/channel.c` (the `causes[]`
//!   table; code values from `include/asterisk/causes.h`).
//!
//! All three were checked against the Asterisk 22.10.1 tag.

/// Q.850 cause codes used by the tables below (values of `AST_CAUSE_*` in
/// Asterisk's `include/asterisk/causes.h`).
pub mod code {
    /// `AST_CAUSE_NOTDEFINED`: no cause set.
    pub const NOT_DEFINED: u16 = 0;
    pub const UNALLOCATED: u16 = 1;
    pub const NO_ROUTE_TRANSIT_NET: u16 = 2;
    pub const NO_ROUTE_DESTINATION: u16 = 3;
    pub const MISDIALLED_TRUNK_PREFIX: u16 = 5;
    pub const CHANNEL_UNACCEPTABLE: u16 = 6;
    pub const CALL_AWARDED_DELIVERED: u16 = 7;
    pub const PRE_EMPTED: u16 = 8;
    pub const NUMBER_PORTED_NOT_HERE: u16 = 14;
    pub const NORMAL_CLEARING: u16 = 16;
    pub const USER_BUSY: u16 = 17;
    pub const NO_USER_RESPONSE: u16 = 18;
    pub const NO_ANSWER: u16 = 19;
    /// Also `AST_CAUSE_UNREGISTERED`.
    pub const SUBSCRIBER_ABSENT: u16 = 20;
    pub const CALL_REJECTED: u16 = 21;
    pub const NUMBER_CHANGED: u16 = 22;
    pub const REDIRECTED_TO_NEW_DESTINATION: u16 = 23;
    pub const ANSWERED_ELSEWHERE: u16 = 26;
    pub const DESTINATION_OUT_OF_ORDER: u16 = 27;
    pub const INVALID_NUMBER_FORMAT: u16 = 28;
    pub const FACILITY_REJECTED: u16 = 29;
    pub const RESPONSE_TO_STATUS_ENQUIRY: u16 = 30;
    pub const NORMAL_UNSPECIFIED: u16 = 31;
    /// Also `AST_CAUSE_CONGESTION`.
    pub const NORMAL_CIRCUIT_CONGESTION: u16 = 34;
    /// Also `AST_CAUSE_FAILURE`.
    pub const NETWORK_OUT_OF_ORDER: u16 = 38;
    pub const NORMAL_TEMPORARY_FAILURE: u16 = 41;
    pub const SWITCH_CONGESTION: u16 = 42;
    pub const ACCESS_INFO_DISCARDED: u16 = 43;
    pub const REQUESTED_CHAN_UNAVAIL: u16 = 44;
    pub const FACILITY_NOT_SUBSCRIBED: u16 = 50;
    pub const OUTGOING_CALL_BARRED: u16 = 52;
    pub const INCOMING_CALL_BARRED: u16 = 54;
    pub const BEARERCAPABILITY_NOTAUTH: u16 = 57;
    pub const BEARERCAPABILITY_NOTAVAIL: u16 = 58;
    pub const BEARERCAPABILITY_NOTIMPL: u16 = 65;
    /// Also `AST_CAUSE_NOSUCHDRIVER`.
    pub const CHAN_NOT_IMPLEMENTED: u16 = 66;
    pub const FACILITY_NOT_IMPLEMENTED: u16 = 69;
    pub const INVALID_CALL_REFERENCE: u16 = 81;
    pub const INCOMPATIBLE_DESTINATION: u16 = 88;
    pub const INVALID_MSG_UNSPECIFIED: u16 = 95;
    pub const MANDATORY_IE_MISSING: u16 = 96;
    pub const MESSAGE_TYPE_NONEXIST: u16 = 97;
    pub const WRONG_MESSAGE: u16 = 98;
    pub const IE_NONEXIST: u16 = 99;
    pub const INVALID_IE_CONTENTS: u16 = 100;
    pub const WRONG_CALL_STATE: u16 = 101;
    pub const RECOVERY_ON_TIMER_EXPIRE: u16 = 102;
    pub const MANDATORY_IE_LENGTH_ERROR: u16 = 103;
    pub const PROTOCOL_ERROR: u16 = 111;
    pub const INTERWORKING: u16 = 127;
}

use code::*;

/// The Q.850 cause for an outgoing call that ended with final response
/// `status` (Asterisk's `ast_sip_hangup_sip2cause()`).
///
/// Codes not listed fall back by class: other 4xx and 6xx give 127
/// (Interworking), other 5xx give 34 (Circuit/channel congestion), and
/// anything outside 400..=699 (other than 302) gives 16 (Normal Clearing).
pub fn cause_of_status(status: u16) -> u16 {
    match status {
        302 => REDIRECTED_TO_NEW_DESTINATION,
        401 | 403 | 407 => CALL_REJECTED,
        404 | 485 | 604 => UNALLOCATED,
        408 => NO_USER_RESPONSE,
        409 => NORMAL_TEMPORARY_FAILURE,
        410 => NUMBER_CHANGED,
        420 => NO_ROUTE_DESTINATION,
        // 483 Too Many Hops is "no answer" in Asterisk, not a routing error.
        480 | 483 => NO_ANSWER,
        484 => INVALID_NUMBER_FORMAT,
        486 | 600 => USER_BUSY,
        488 | 606 => BEARERCAPABILITY_NOTAVAIL,
        405 | 411 | 413 | 414 | 415 | 481 | 482 | 487 | 491 | 493 | 505 => INTERWORKING,
        500 => NETWORK_OUT_OF_ORDER,
        501 => FACILITY_REJECTED,
        502 => DESTINATION_OUT_OF_ORDER,
        503 => NORMAL_CIRCUIT_CONGESTION,
        504 => RECOVERY_ON_TIMER_EXPIRE,
        603 => CALL_REJECTED,
        _ => cause_of_unlisted_status(status),
    }
}

/// The default arm of `ast_sip_hangup_sip2cause()`: by response class.
fn cause_of_unlisted_status(status: u16) -> u16 {
    match status / 100 {
        // 4xx: something was wrong with our request; 6xx: the global 4xx.
        4 | 6 => INTERWORKING,
        // 5xx: a problem at the far end.
        5 => NORMAL_CIRCUIT_CONGESTION,
        _ => NORMAL_CLEARING,
    }
}

/// The final response Asterisk sends when an unanswered incoming call is hung
/// up with `cause` (chan_pjsip's `hangup_cause2sip()`).
///
/// Causes that table does not list (including 0 and 16 Normal Clearing) make
/// it answer 0, which `ast_sip_session_terminate()` replaces with 603 Decline.
pub fn status_of_cause(cause: u16) -> u16 {
    match cause {
        REDIRECTED_TO_NEW_DESTINATION => 302,
        UNALLOCATED | NO_ROUTE_TRANSIT_NET | NO_ROUTE_DESTINATION => 404,
        NORMAL_CIRCUIT_CONGESTION | SWITCH_CONGESTION | CHAN_NOT_IMPLEMENTED => 503,
        NO_USER_RESPONSE => 408,
        NO_ANSWER | SUBSCRIBER_ABSENT | NORMAL_UNSPECIFIED => 480,
        CALL_REJECTED => 403,
        NUMBER_CHANGED => 410,
        INVALID_NUMBER_FORMAT => 484,
        USER_BUSY => 486,
        NETWORK_OUT_OF_ORDER | INTERWORKING => 500,
        FACILITY_REJECTED => 501,
        DESTINATION_OUT_OF_ORDER => 502,
        BEARERCAPABILITY_NOTAVAIL => 488,
        _ => 603,
    }
}

/// Asterisk's description of `cause` (`ast_cause2str()`), "Unknown" for any
/// code its table lacks, 0 included.
pub fn cause_text(cause: u16) -> &'static str {
    match cause {
        UNALLOCATED => "Unallocated (unassigned) number",
        NO_ROUTE_TRANSIT_NET => "No route to specified transmit network",
        NO_ROUTE_DESTINATION => "No route to destination",
        MISDIALLED_TRUNK_PREFIX => "Misdialed trunk prefix",
        CHANNEL_UNACCEPTABLE => "Channel unacceptable",
        CALL_AWARDED_DELIVERED => "Call awarded and being delivered in an established channel",
        PRE_EMPTED => "Pre-empted",
        NUMBER_PORTED_NOT_HERE => "Number ported elsewhere",
        NORMAL_CLEARING => "Normal Clearing",
        USER_BUSY => "User busy",
        NO_USER_RESPONSE => "No user responding",
        NO_ANSWER => "User alerting, no answer",
        SUBSCRIBER_ABSENT => "Subscriber absent",
        CALL_REJECTED => "Call Rejected",
        NUMBER_CHANGED => "Number changed",
        REDIRECTED_TO_NEW_DESTINATION => "Redirected to new destination",
        ANSWERED_ELSEWHERE => "Answered elsewhere",
        DESTINATION_OUT_OF_ORDER => "Destination out of order",
        INVALID_NUMBER_FORMAT => "Invalid number format",
        FACILITY_REJECTED => "Facility rejected",
        RESPONSE_TO_STATUS_ENQUIRY => "Response to STATus ENQuiry",
        NORMAL_UNSPECIFIED => "Normal, unspecified",
        NORMAL_CIRCUIT_CONGESTION => "Circuit/channel congestion",
        NETWORK_OUT_OF_ORDER => "Network out of order",
        NORMAL_TEMPORARY_FAILURE => "Temporary failure",
        SWITCH_CONGESTION => "Switching equipment congestion",
        ACCESS_INFO_DISCARDED => "Access information discarded",
        REQUESTED_CHAN_UNAVAIL => "Requested channel not available",
        FACILITY_NOT_SUBSCRIBED => "Facility not subscribed",
        OUTGOING_CALL_BARRED => "Outgoing call barred",
        INCOMING_CALL_BARRED => "Incoming call barred",
        BEARERCAPABILITY_NOTAUTH => "Bearer capability not authorized",
        BEARERCAPABILITY_NOTAVAIL => "Bearer capability not available",
        BEARERCAPABILITY_NOTIMPL => "Bearer capability not implemented",
        CHAN_NOT_IMPLEMENTED => "Channel not implemented",
        FACILITY_NOT_IMPLEMENTED => "Facility not implemented",
        INVALID_CALL_REFERENCE => "Invalid call reference value",
        INCOMPATIBLE_DESTINATION => "Incompatible destination",
        INVALID_MSG_UNSPECIFIED => "Invalid message unspecified",
        MANDATORY_IE_MISSING => "Mandatory information element is missing",
        MESSAGE_TYPE_NONEXIST => "Message type nonexist.",
        WRONG_MESSAGE => "Wrong message",
        IE_NONEXIST => "Info. element nonexist or not implemented",
        INVALID_IE_CONTENTS => "Invalid information element contents",
        WRONG_CALL_STATE => "Message not compatible with call state",
        RECOVERY_ON_TIMER_EXPIRE => "Recover on timer expiry",
        MANDATORY_IE_LENGTH_ERROR => "Mandatory IE length error",
        PROTOCOL_ERROR => "Protocol error, unspecified",
        INTERWORKING => "Interworking, unspecified",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_statuses_map_to_their_causes() {
        let rows = [
            (302, 23),
            (401, 21),
            (403, 21),
            (404, 1),
            (405, 127),
            (407, 21),
            (408, 18),
            (409, 41),
            (410, 22),
            (420, 3),
            (480, 19),
            (481, 127),
            (483, 19),
            (484, 28),
            (485, 1),
            (486, 17),
            (487, 127),
            (488, 58),
            (500, 38),
            (501, 29),
            (502, 27),
            (503, 34),
            (504, 102),
            (505, 127),
            (600, 17),
            (603, 21),
            (604, 1),
            (606, 58),
        ];
        for (status, cause) in rows {
            assert_eq!(cause_of_status(status), cause, "status {status}");
        }
    }

    #[test]
    fn unlisted_statuses_fall_back_by_class() {
        assert_eq!(cause_of_status(400), 127);
        assert_eq!(cause_of_status(402), 127);
        assert_eq!(cause_of_status(499), 127);
        assert_eq!(cause_of_status(506), 34);
        assert_eq!(cause_of_status(580), 34);
        assert_eq!(cause_of_status(599), 34);
        assert_eq!(cause_of_status(605), 127);
        assert_eq!(cause_of_status(699), 127);
        // Outside 4xx..6xx (and not 302): Normal Clearing.
        for status in [0, 100, 180, 200, 301, 399, 700, 999, u16::MAX] {
            assert_eq!(cause_of_status(status), 16, "status {status}");
        }
    }

    #[test]
    fn listed_causes_map_to_their_statuses() {
        let rows = [
            (1, 404),
            (2, 404),
            (3, 404),
            (17, 486),
            (18, 408),
            (19, 480),
            (20, 480),
            (21, 403),
            (22, 410),
            (23, 302),
            (27, 502),
            (28, 484),
            (29, 501),
            (31, 480),
            (34, 503),
            (38, 500),
            (42, 503),
            (58, 488),
            (66, 503),
            (127, 500),
        ];
        for (cause, status) in rows {
            assert_eq!(status_of_cause(cause), status, "cause {cause}");
        }
    }

    #[test]
    fn unlisted_causes_decline() {
        // Includes 0 (not defined) and 16 (Normal Clearing): chan_pjsip has no
        // row for them and the session layer answers 603.
        for cause in [0, 16, 26, 41, 44, 102, 111, 128, u16::MAX] {
            assert_eq!(status_of_cause(cause), 603, "cause {cause}");
        }
    }

    #[test]
    fn cause_texts_match_asterisk() {
        assert_eq!(cause_text(0), "Unknown");
        assert_eq!(cause_text(1), "Unallocated (unassigned) number");
        assert_eq!(cause_text(16), "Normal Clearing");
        assert_eq!(cause_text(17), "User busy");
        assert_eq!(cause_text(21), "Call Rejected");
        assert_eq!(cause_text(30), "Response to STATus ENQuiry");
        assert_eq!(cause_text(34), "Circuit/channel congestion");
        assert_eq!(cause_text(97), "Message type nonexist.");
        assert_eq!(cause_text(102), "Recover on timer expiry");
        assert_eq!(cause_text(127), "Interworking, unspecified");
    }

    #[test]
    fn unknown_causes_have_unknown_text() {
        for cause in [4, 9, 15, 24, 35, 110, 126, 128, u16::MAX] {
            assert_eq!(cause_text(cause), "Unknown", "cause {cause}");
        }
    }

    #[test]
    fn every_listed_cause_has_text() {
        let listed = [
            1, 2, 3, 5, 6, 7, 8, 14, 16, 17, 18, 19, 20, 21, 22, 23, 26, 27, 28, 29, 30, 31, 34,
            38, 41, 42, 43, 44, 50, 52, 54, 57, 58, 65, 66, 69, 81, 88, 95, 96, 97, 98, 99, 100,
            101, 102, 103, 111, 127,
        ];
        for cause in listed {
            assert_ne!(cause_text(cause), "Unknown", "cause {cause}");
        }
        let known = (0..=u16::MAX)
            .filter(|&c| cause_text(c) != "Unknown")
            .count();
        assert_eq!(known, listed.len());
    }
}
