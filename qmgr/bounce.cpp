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

// RFC 3464 §2.3.4: the status class must agree with the action (2 for
// successes, 4 for delays, 5 for failures — a 4.x.y that expired fails).
std::string report_status(Action action, std::string_view status) {
    char wanted = action == Action::failed ? '5' : action == Action::delayed ? '4' : '2';
    bool well_formed = status.size() >= 5 && status.size() <= 11 && status[1] == '.' &&
                       std::all_of(status.begin(), status.end(), [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
    if (!well_formed) return fmt::format("{}.0.0", wanted);
    if (status[0] == wanted || (action == Action::failed && status[0] == '4')) return std::string(status);
    return fmt::format("{}{}", wanted, status.substr(1));
}

}  // namespace

std::string_view action_name(Action action) {
    switch (action) {
    case Action::failed: return "failed";
    case Action::delayed: return "delayed";
    case Action::delivered: return "delivered";
    case Action::relayed: return "relayed";
    case Action::expanded: return "expanded";
    }
    return "failed";
}

std::string remote_mta(std::string_view relay) {
    std::string_view host = relay.substr(0, relay.find('['));
    if (host.empty() || host == "none" || host == "-") return "";
    return one_line(host);
}

bool is_smtp_reply(std::string_view diagnostic) {
    // RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP or "-".
    return diagnostic.size() >= 4 && diagnostic[0] >= '2' && diagnostic[0] <= '5' && diagnostic[1] >= '0' &&
           diagnostic[1] <= '5' && diagnostic[2] >= '0' && diagnostic[2] <= '9' &&
           (diagnostic[3] == ' ' || diagnostic[3] == '-');
}

std::string remote_reply(std::string_view reason) {
    if (is_smtp_reply(reason)) return std::string(reason);
    size_t said = reason.find(" said: ");
    if (said == std::string_view::npos) return "";
    std::string_view reply = reason.substr(said + 7);
    if (!is_smtp_reply(reply)) return "";
    // The SMTP stage relayd adds is ours, not part of the reply.
    if (size_t stage = reply.rfind(" (in reply to "); stage != std::string_view::npos && reply.ends_with(")"))
        reply = reply.substr(0, stage);
    return std::string(reply);
}

bool wants_failure_report(unsigned notify) {
    if (notify == queue::notify_default) return true;
    if (notify & queue::notify_never) return false;
    return (notify & queue::notify_failure) != 0;
}

bool wants_success_report(unsigned notify) {
    return (notify & queue::notify_never) == 0 && (notify & queue::notify_success) != 0;
}

bool wants_delay_report(unsigned notify) {
    if (notify == queue::notify_default) return true;
    if (notify & queue::notify_never) return false;
    return (notify & queue::notify_delay) != 0;
}

Returned returned_part(queue::Ret ret, uint64_t message_size, uint64_t full_limit, bool has_failure) {
    if (ret == queue::Ret::headers || !has_failure) return Returned::headers;
    return message_size <= full_limit ? Returned::full : Returned::headers;
}

std::string compose_report(const ReportInput& input) {
    auto any = [&](Action action) {
        return std::any_of(input.recipients.begin(), input.recipients.end(),
                           [action](const ReportedRecipient& r) { return r.action == action; });
    };
    enum class Kind { failure, delay, success };
    Kind kind = any(Action::failed) ? Kind::failure : any(Action::delayed) ? Kind::delay : Kind::success;
    std::string boundary = fmt::format("{}/{}", input.report_id, input.hostname);
    std::string out;
    out += fmt::format("From: MAILER-DAEMON@{} (Mail Delivery System)\r\n", input.hostname);
    out += fmt::format("To: <{}>\r\n", one_line(input.envelope.sender));
    switch (kind) {
    case Kind::failure: out += "Subject: Undelivered Mail Returned to Sender\r\n"; break;
    case Kind::delay: out += "Subject: Delayed Mail (still being retried)\r\n"; break;
    case Kind::success: out += "Subject: Successful Mail Delivery Report\r\n"; break;
    }
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
    switch (kind) {
    case Kind::failure:
        out += "I'm sorry to have to inform you that your message could not\r\n"
               "be delivered to one or more recipients. It's attached below.\r\n\r\n";
        break;
    case Kind::delay: {
        int64_t waited = std::max<int64_t>(0, static_cast<int64_t>(input.now) - input.envelope.arrival_time);
        out += "####################################################################\r\n"
               "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
               "####################################################################\r\n\r\n";
        out += fmt::format("Your message could not be delivered for {} minute(s).\r\n", waited / 60);
        out += fmt::format("It will be retried until {}.\r\n\r\n", message::format_date(input.will_retry_until));
        break;
    }
    case Kind::success:
        out += "Your message was successfully delivered to the destination(s)\r\n"
               "listed below, as you asked with a delivery status notification.\r\n"
               "Where it was relayed to a system that does not send such\r\n"
               "notifications, you will receive none from there.\r\n\r\n";
        break;
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
        out += fmt::format("Action: {}\r\n", action_name(r.action));
        out += fmt::format("Status: {}\r\n", report_status(r.action, r.status));
        std::string mta = remote_mta(r.relay);
        if (!mta.empty()) out += fmt::format("Remote-MTA: dns; {}\r\n", mta);
        // RFC 3464 §2.3.6: "smtp" with the remote server's reply when one
        // answered; our own words are x-unix.
        std::string reply = mta.empty() ? std::string() : remote_reply(r.diagnostic);
        if (!reply.empty()) out += fmt::format("Diagnostic-Code: smtp; {}\r\n", one_line(reply));
        else out += fmt::format("Diagnostic-Code: x-unix; {}\r\n", one_line(r.diagnostic));
        if (r.action == Action::delayed && input.will_retry_until > 0)
            out += fmt::format("Will-Retry-Until: {}\r\n", message::format_date(input.will_retry_until));
    }
    out += "\r\n";

    // Part 3: the original, as RET asked.
    std::string_view what = kind == Kind::failure ? "Undelivered" : kind == Kind::delay ? "Delayed" : "Delivered";
    out += fmt::format("--{}\r\n", boundary);
    if (input.original_is_complete) {
        out += fmt::format("Content-Description: {} Message\r\nContent-Type: message/rfc822\r\n", what);
    } else {
        out += fmt::format("Content-Description: {} Message Headers\r\nContent-Type: text/rfc822-headers\r\n", what);
    }
    if (input.envelope.body != queue::BodyType::seven_bit) out += "Content-Transfer-Encoding: 8bit\r\n";
    out += "\r\n";
    out += input.original;
    if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
    out += fmt::format("\r\n--{}--\r\n", boundary);
    return out;
}

int64_t backoff_seconds(int64_t age_seconds, int64_t minimal, int64_t maximal) {
    return std::clamp(age_seconds, minimal, std::max(minimal, maximal));
}

}  // namespace facteur::qmgr
