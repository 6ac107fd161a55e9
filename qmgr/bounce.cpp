// RFC 3464 reports: a human-readable part, message/delivery-status, and the
// original message or its header.
#include "qmgr/bounce.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "libmail/message_header.hpp"

namespace facteur::qmgr {
namespace {

// RFC 3461 §4.2: ORCPT is kept "addr-type;address"; in the report the
// address part is written as-is with a space after the semicolon.
std::string original_recipient(std::string_view orcpt) {
    size_t semicolon = orcpt.find(';');
    if (semicolon == std::string_view::npos) return fmt::format("rfc822; {}", orcpt);
    return fmt::format("{}; {}", orcpt.substr(0, semicolon), orcpt.substr(semicolon + 1));
}

// Header values we write must be one line of printable text.
std::string one_line(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, 900)) out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
    return out;
}

}  // namespace

bool wants_failure_report(unsigned notify) {
    if (notify == queue::notify_default) return true;
    if (notify & queue::notify_never) return false;
    return (notify & queue::notify_failure) != 0;
}

bool wants_success_report(unsigned notify) {
    return (notify & queue::notify_never) == 0 && (notify & queue::notify_success) != 0;
}

Returned returned_part(queue::Ret ret, uint64_t message_size, uint64_t full_limit) {
    if (ret == queue::Ret::headers) return Returned::headers;
    return message_size <= full_limit ? Returned::full : Returned::headers;
}

std::string compose_report(const ReportInput& input) {
    bool any_failed = std::any_of(input.recipients.begin(), input.recipients.end(),
                                  [](const ReportedRecipient& r) { return !r.delivered; });
    std::string boundary = fmt::format("{}/{}", input.report_id, input.hostname);
    std::string out;
    out += fmt::format("From: MAILER-DAEMON@{} (Mail Delivery System)\r\n", input.hostname);
    out += fmt::format("To: <{}>\r\n", one_line(input.envelope.sender));
    out += any_failed ? "Subject: Undelivered Mail Returned to Sender\r\n" : "Subject: Successful Mail Delivery Report\r\n";
    out += fmt::format("Date: {}\r\n", message::format_date(input.now));
    out += fmt::format("Message-ID: <{}@{}>\r\n", input.report_id, input.hostname);
    // RFC 3834 §5: never answered by auto-responders.
    out += "Auto-Submitted: auto-replied\r\n";
    out += "MIME-Version: 1.0\r\n";
    out += fmt::format("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{}\"\r\n", boundary);
    out += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

    // Part 1: for people.
    out += fmt::format("--{}\r\n", boundary);
    out += "Content-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
    out += fmt::format("This is the mail system at host {}.\r\n\r\n", input.hostname);
    if (any_failed) {
        out += "I'm sorry to have to inform you that your message could not\r\n"
               "be delivered to one or more recipients. It's attached below.\r\n\r\n";
    } else {
        out += "Your message was successfully delivered to the destination(s)\r\n"
               "listed below, as you asked with a delivery status notification.\r\n\r\n";
    }
    for (const ReportedRecipient& r : input.recipients)
        out += fmt::format("<{}>: {}\r\n", one_line(r.address), one_line(r.diagnostic));
    out += "\r\n";

    // Part 2: for programs (RFC 3464 §2.2, §2.3).
    out += fmt::format("--{}\r\n", boundary);
    out += "Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n";
    out += fmt::format("Reporting-MTA: dns; {}\r\n", input.hostname);
    out += fmt::format("X-Facteur-Queue-ID: {}\r\n", input.queue_id);
    if (!input.envelope.envid.empty()) out += fmt::format("Original-Envelope-Id: {}\r\n", one_line(input.envelope.envid));
    if (!input.envelope.sender.empty()) out += fmt::format("X-Facteur-Sender: rfc822; {}\r\n", one_line(input.envelope.sender));
    out += fmt::format("Arrival-Date: {}\r\n", message::format_date(static_cast<std::time_t>(input.envelope.arrival_time)));
    for (const ReportedRecipient& r : input.recipients) {
        out += "\r\n";
        out += fmt::format("Final-Recipient: rfc822; {}\r\n", one_line(r.address));
        if (!r.orcpt.empty()) out += fmt::format("Original-Recipient: {}\r\n", one_line(original_recipient(r.orcpt)));
        out += fmt::format("Action: {}\r\n", r.delivered ? "delivered" : "failed");
        out += fmt::format("Status: {}\r\n", r.status);
        out += fmt::format("Diagnostic-Code: x-unix; {}\r\n", one_line(r.diagnostic));
    }
    out += "\r\n";

    // Part 3: the original, as RET asked.
    out += fmt::format("--{}\r\n", boundary);
    if (input.original_is_complete) {
        out += "Content-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n";
        if (input.envelope.body != queue::BodyType::seven_bit) out += "Content-Transfer-Encoding: 8bit\r\n";
        out += "\r\n";
        out += input.original;
    } else {
        out += "Content-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n";
        if (input.envelope.body != queue::BodyType::seven_bit) out += "Content-Transfer-Encoding: 8bit\r\n";
        out += "\r\n";
        out += input.original;
    }
    if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
    out += fmt::format("\r\n--{}--\r\n", boundary);
    return out;
}

int64_t backoff_seconds(int64_t age_seconds, int64_t minimal, int64_t maximal) {
    return std::clamp(age_seconds, minimal, std::max(minimal, maximal));
}

}  // namespace facteur::qmgr
