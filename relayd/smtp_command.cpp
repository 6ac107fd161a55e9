// SMTP client command lines and DATA dot-stuffing (RFC 5321, 1870, 3461,
// 6152, 6531).
#include "relayd/smtp_command.hpp"

#include <fmt/format.h>

namespace facteur::relayd {

std::string xtext_encode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 33 || byte > 126 || c == '+' || c == '=')
            out += fmt::format("+{:02X}", byte);
        else
            out += c;
    }
    return out;
}

std::string notify_value(unsigned notify) {
    if (notify & queue::notify_never) return "NEVER";
    std::string out;
    auto add = [&out](const char* word) {
        if (!out.empty()) out += ',';
        out += word;
    };
    if (notify & queue::notify_success) add("SUCCESS");
    if (notify & queue::notify_failure) add("FAILURE");
    if (notify & queue::notify_delay) add("DELAY");
    return out;
}

std::string mail_command(const queue::Envelope& envelope, const Capabilities& capabilities, uint64_t size,
                         bool eight_bit) {
    std::string out = fmt::format("MAIL FROM:<{}>", envelope.sender);
    if (capabilities.size) out += fmt::format(" SIZE={}", size);
    if (eight_bit && capabilities.eightbitmime) out += " BODY=8BITMIME";
    if (envelope.smtputf8 && capabilities.smtputf8) out += " SMTPUTF8";
    if (capabilities.dsn) {
        if (envelope.ret == queue::Ret::full) out += " RET=FULL";
        if (envelope.ret == queue::Ret::headers) out += " RET=HDRS";
        if (!envelope.envid.empty()) out += " ENVID=" + xtext_encode(envelope.envid);
    }
    out += "\r\n";
    return out;
}

std::string rcpt_command(const queue::Recipient& recipient, const Capabilities& capabilities) {
    std::string out = fmt::format("RCPT TO:<{}>", recipient.address);
    if (capabilities.dsn) {
        if (std::string notify = notify_value(recipient.notify); !notify.empty()) out += " NOTIFY=" + notify;
        // RFC 3461 §4.2: ORCPT=addr-type ";" xtext. The type is an atom
        // ("rfc822"); only the address part is encoded.
        if (size_t semicolon = recipient.orcpt.find(';'); semicolon != std::string::npos && semicolon > 0) {
            out += " ORCPT=" + recipient.orcpt.substr(0, semicolon) + ";" +
                   xtext_encode(std::string_view(recipient.orcpt).substr(semicolon + 1));
        }
    }
    out += "\r\n";
    return out;
}

void DotStuffer::add(std::string_view data, std::string& out) {
    out.reserve(out.size() + data.size() + 16);
    for (char c : data) {
        if (at_line_start_ && c == '.') out += '.';
        out += c;
        at_line_start_ = c == '\n';
        after_cr_ = c == '\r';
    }
}

std::string DotStuffer::finish() const {
    // The stored message normally ends with CRLF (smtpd keeps the CRLF
    // before the dot; sendmail(1) adds one), and an empty message is just the
    // dot.
    if (at_line_start_) return ".\r\n";
    if (after_cr_) return "\n.\r\n";
    return "\r\n.\r\n";
}

bool has_non_ascii(std::string_view text) {
    for (char c : text)
        if (static_cast<unsigned char>(c) >= 0x80) return true;
    return false;
}

}  // namespace facteur::relayd
