// Wire formatting of SMTP replies (RFC 5321 §4.2, RFC 2034 enhanced codes).
#include "smtpd/smtp_reply.hpp"

#include <fmt/format.h>

namespace facteur::smtpd {

std::string Reply::format() const {
    if (enhanced.empty()) return fmt::format("{} {}\r\n", code, text);
    return fmt::format("{} {} {}\r\n", code, enhanced, text);
}

std::string format_lines(int code, std::string_view enhanced, const std::vector<std::string>& lines) {
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
        char separator = i + 1 == lines.size() ? ' ' : '-';
        if (enhanced.empty()) {
            out += fmt::format("{}{}{}\r\n", code, separator, lines[i]);
        } else {
            out += fmt::format("{}{}{} {}\r\n", code, separator, enhanced, lines[i]);
        }
    }
    return out;
}

}  // namespace facteur::smtpd
