// Text and JSON renderings of a queue listing (libmail/queue_listing.hpp).
#include "libmail/queue_listing.hpp"

#include <ctime>

#include <fmt/format.h>

#include "libmail/log.hpp"

namespace facteur::queue_listing {
namespace {

// Column layout: id and marker (19) + space, size (8) + space, arrival (20)
// + two spaces, folder/state (8) + space, then sender or recipient.
constexpr size_t kRecipientIndent = 20 + 9 + 20 + 2;
constexpr size_t kReasonIndent = kRecipientIndent + 9;
// Long enough for any address or SMTP reply line; longer text is cut with "...".
constexpr size_t kMaxShown = 1024;

std::string shown_sender(std::string_view sender) {
    // Postfix shows the null reverse-path (bounces) as MAILER-DAEMON.
    return sender.empty() ? "MAILER-DAEMON" : log::printable(sender, kMaxShown);
}

// Length of a well-formed UTF-8 sequence at the front of `text` (RFC 3629
// §4: no overlong forms, no surrogates, nothing past U+10FFFF), else 0.
size_t utf8_sequence(std::string_view text) {
    auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
    auto continuation = [&](size_t i) { return i < text.size() && (byte(i) & 0xC0) == 0x80; };
    unsigned char first = byte(0);
    if (first < 0x80) return 1;
    if (first >= 0xC2 && first <= 0xDF) return continuation(1) ? 2 : 0;
    if (first >= 0xE0 && first <= 0xEF) {
        if (!continuation(1) || !continuation(2)) return 0;
        if (first == 0xE0 && byte(1) < 0xA0) return 0;  // overlong
        if (first == 0xED && byte(1) >= 0xA0) return 0;  // surrogates
        return 3;
    }
    if (first >= 0xF0 && first <= 0xF4) {
        if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
        if (first == 0xF0 && byte(1) < 0x90) return 0;   // overlong
        if (first == 0xF4 && byte(1) >= 0x90) return 0;  // past U+10FFFF
        return 4;
    }
    return 0;
}

}  // namespace

std::string format_arrival(int64_t unix_time) {
    std::time_t time = static_cast<std::time_t>(unix_time);
    std::tm local{};
    if (localtime_r(&time, &local) == nullptr) return "-";
    char buffer[64];
    size_t length = std::strftime(buffer, sizeof buffer, "%a %b %e %H:%M:%S", &local);
    return std::string(buffer, length);
}

char folder_marker(std::string_view folder) {
    if (folder == "active") return '*';
    if (folder == "hold") return '!';
    return ' ';
}

std::string format_text(const queue_control::Listing& listing) {
    if (listing.messages.empty() && listing.truncated == 0) return "Mail queue is empty\n";
    std::string out = "-Queue ID---------  --Size-- ----Arrival Time----  -Folder- -Sender/Recipient-------\n";
    uint64_t total = 0;
    for (const queue_control::MessageInfo& message : listing.messages) {
        total += message.size;
        out += fmt::format("{:<18}{} {:>8} {:<20}  {:<8} {}\n", log::printable(message.id, 32),
                           folder_marker(message.folder), message.size, format_arrival(message.arrival),
                           message.folder, shown_sender(message.sender));
        for (const queue_control::RecipientInfo& recipient : message.recipients) {
            out += fmt::format("{:{}}{:<8} {}\n", "", kRecipientIndent, recipient.state,
                               log::printable(recipient.address, kMaxShown));
            if (!recipient.reason.empty() || (!recipient.dsn.empty() && recipient.state != "sent")) {
                std::string reason = recipient.dsn.empty() ? recipient.reason
                                     : recipient.reason.empty() ? recipient.dsn
                                                                : recipient.dsn + " " + recipient.reason;
                out += fmt::format("{:{}}({})\n", "", kReasonIndent, log::printable(reason, kMaxShown));
            }
        }
        out += "\n";
    }
    if (listing.truncated > 0)
        out += fmt::format("-- {} more message{} not listed\n", listing.truncated, listing.truncated == 1 ? "" : "s");
    size_t count = listing.messages.size();
    out += fmt::format("-- {} Kbytes in {} Request{}.\n", (total + 1023) / 1024, count, count == 1 ? "" : "s");
    return out;
}

std::string json_string(std::string_view text) {
    std::string out = "\"";
    size_t position = 0;
    while (position < text.size()) {
        unsigned char c = static_cast<unsigned char>(text[position]);
        if (c >= 0x80) {
            size_t length = utf8_sequence(text.substr(position));
            if (length == 0) {
                out += "\\ufffd";
                ++position;
            } else {
                out.append(text.substr(position, length));
                position += length;
            }
            continue;
        }
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            // RFC 8259 §7: control characters must be escaped; DEL too, for terminals.
            if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
            else out += static_cast<char>(c);
        }
        ++position;
    }
    out += '"';
    return out;
}

std::string format_json(const queue_control::Listing& listing) {
    std::string out;
    // Field names follow `postqueue -j` where Postfix has one.
    for (const queue_control::MessageInfo& message : listing.messages) {
        out += fmt::format("{{\"queue_name\": {}, \"queue_id\": {}, \"arrival_time\": {}, \"message_size\": {}, "
                           "\"sender\": {}, \"next_attempt\": {}, \"recipients\": [",
                           json_string(message.folder), json_string(message.id), message.arrival, message.size,
                           json_string(message.sender), message.next_attempt);
        for (size_t i = 0; i < message.recipients.size(); ++i) {
            const queue_control::RecipientInfo& recipient = message.recipients[i];
            out += fmt::format("{}{{\"address\": {}, \"state\": {}, \"dsn\": {}, \"delay_reason\": {}}}",
                               i == 0 ? "" : ", ", json_string(recipient.address), json_string(recipient.state),
                               json_string(recipient.dsn), json_string(recipient.reason));
        }
        out += "]}\n";
    }
    if (listing.truncated > 0) out += fmt::format("{{\"truncated\": {}}}\n", listing.truncated);
    return out;
}

}  // namespace facteur::queue_listing
