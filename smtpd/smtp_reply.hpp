// An SMTP reply: code, RFC 3463 enhanced status code and text, and its
// wire form (RFC 5321 §4.2, multi-line replies with "-").
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace facteur::smtpd {

struct Reply {
    int code = 250;
    std::string enhanced;  // "2.0.0"; empty for replies that carry none (220, 334, 354)
    std::string text;

    // "code enhanced text\r\n".
    std::string format() const;
    bool is_error() const { return code >= 400; }
};

// A multi-line reply: every line but the last gets "code-" (RFC 5321 §4.2.1).
// `enhanced` (if any) prefixes each line's text.
std::string format_lines(int code, std::string_view enhanced, const std::vector<std::string>& lines);

}  // namespace facteur::smtpd
