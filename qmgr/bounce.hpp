// Delivery status notifications (RFC 3464 multipart/report, RFC 3461 RET and
// ENVID) that qmgr returns to a message's sender. Pure text composition.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/queue.hpp"

namespace facteur::qmgr {

struct ReportedRecipient {
    std::string address;  // final recipient
    std::string orcpt;    // "rfc822;addr" or empty
    bool delivered = false;  // Action: delivered (NOTIFY=SUCCESS) instead of failed
    std::string status;      // 5.1.1
    std::string diagnostic;  // one line
};

struct ReportInput {
    std::string hostname;  // Reporting-MTA and From: MAILER-DAEMON@hostname
    std::string queue_id;  // of the original message
    std::string report_id; // queue id of the report itself (Message-ID)
    queue::Envelope envelope;
    std::vector<ReportedRecipient> recipients;
    std::string original;  // the original message (or just its header)
    bool original_is_complete = true;
    std::time_t now = 0;
};

// Which recipients a report covers: failures unless NOTIFY excluded them
// (NEVER, or a list without FAILURE), deliveries only with NOTIFY=SUCCESS.
bool wants_failure_report(unsigned notify);
bool wants_success_report(unsigned notify);

// How much of the original to return: RET=HDRS → the header; RET=FULL or
// unspecified → the whole message if at most `full_limit` bytes, else the
// header (the report says so).
enum class Returned { headers, full };
Returned returned_part(queue::Ret ret, uint64_t message_size, uint64_t full_limit);

// The complete report message, CRLF line endings.
std::string compose_report(const ReportInput& input);

// Retry delay after a temporary failure (like Postfix): the message's age,
// bounded below by `minimal` and above by `maximal`.
int64_t backoff_seconds(int64_t age_seconds, int64_t minimal, int64_t maximal);

}  // namespace facteur::qmgr
