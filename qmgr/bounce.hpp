// Delivery status notifications (RFC 3464 multipart/report, RFC 3461 RET and
// ENVID) that qmgr returns to a message's sender. Pure text composition.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/queue.hpp"

namespace facteur::qmgr {

// RFC 3464 §2.3.3 action-value.
enum class Action { failed, delayed, delivered, relayed, expanded };
std::string_view action_name(Action action);

struct ReportedRecipient {
    std::string address;  // final recipient
    std::string orcpt;    // "rfc822;addr" or empty
    Action action = Action::failed;
    std::string status;      // 5.1.1, 4.4.1, 2.0.0
    std::string diagnostic;  // one line: ours, or the remote server's reply
    // The server relayd talked to, as relayd reports it
    // ("mx.example.org[192.0.2.1]:25"); empty for local outcomes.
    std::string relay;
};

// The host name in a relayd "host[address]:port" (Remote-MTA, RFC 3464
// §2.3.5), or "" when there is none.
std::string remote_mta(std::string_view relay);
// Whether a diagnostic is an SMTP reply ("550 5.1.1 ...") to be reported
// as "Diagnostic-Code: smtp;" (RFC 3464 §2.3.6) rather than x-unix.
bool is_smtp_reply(std::string_view diagnostic);
// The remote server's reply inside relayd's reason, which is either the
// reply itself or Postfix-style "host mx.example[192.0.2.1] said: 550 5.1.1
// ... (in reply to RCPT TO command)"; empty when there is none.
std::string remote_reply(std::string_view reason);

struct ReportInput {
    std::string hostname;  // Reporting-MTA and From: MAILER-DAEMON@hostname
    std::string queue_id;  // of the original message
    std::string report_id; // queue id of the report itself (Message-ID)
    queue::Envelope envelope;
    std::vector<ReportedRecipient> recipients;
    std::string original;  // the original message (or just its header)
    bool original_is_complete = true;
    std::time_t now = 0;
    // Delay warnings: Will-Retry-Until (RFC 3464 §2.3.7), the message's
    // arrival plus maximal_queue_lifetime.
    std::time_t will_retry_until = 0;
};

// Which recipients a report covers: failures unless NOTIFY excluded them
// (NEVER, or a list without FAILURE), deliveries only with NOTIFY=SUCCESS.
bool wants_failure_report(unsigned notify);
bool wants_success_report(unsigned notify);

// Delay warnings (RFC 3461 §4.1): NOTIFY unspecified or including DELAY.
bool wants_delay_report(unsigned notify);

// How much of the original to return: RET=HDRS → the header; RET=FULL or
// unspecified → the whole message if at most `full_limit` bytes, else the
// header (the report says so). Reports without a failure (delays,
// successes) carry only the header (RFC 3461 §4.3).
enum class Returned { headers, full };
Returned returned_part(queue::Ret ret, uint64_t message_size, uint64_t full_limit, bool has_failure = true);

// The complete report message, CRLF line endings. The subject and the
// text follow the worst action: failed, else delayed, else success.
std::string compose_report(const ReportInput& input);

// Retry delay after a temporary failure (like Postfix): the message's age,
// bounded below by `minimal` and above by `maximal`.
int64_t backoff_seconds(int64_t age_seconds, int64_t minimal, int64_t maximal);

}  // namespace facteur::qmgr
