// SMTP reply assembly for relayd (RFC 5321 §4.2, RFC 3463, RFC 2034).
#include "relayd/smtp_reply.hpp"

#include <fmt/format.h>

#include "libmail/log.hpp"

namespace facteur::relayd {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 1 to 3 digits, no leading junk.
size_t digits(std::string_view text, size_t at) {
    size_t n = 0;
    while (at + n < text.size() && is_digit(text[at + n]) && n < 4) ++n;
    return n;
}

}  // namespace

std::string_view leading_enhanced_code(std::string_view text) {
    if (text.size() < 5) return {};
    if (text[0] != '2' && text[0] != '4' && text[0] != '5') return {};
    if (text[1] != '.') return {};
    size_t subject = digits(text, 2);
    if (subject == 0 || subject > 3) return {};
    size_t dot = 2 + subject;
    if (dot >= text.size() || text[dot] != '.') return {};
    size_t detail = digits(text, dot + 1);
    if (detail == 0 || detail > 3) return {};
    size_t end = dot + 1 + detail;
    if (end < text.size() && text[end] != ' ') return {};
    return text.substr(0, end);
}

std::string with_class(std::string_view dsn, char klass) {
    std::string out(dsn);
    if (!out.empty()) out[0] = klass;
    return out;
}

std::vector<std::string_view> Reply::texts() const {
    std::vector<std::string_view> out;
    for (const std::string& line : lines) {
        std::string_view view(line);
        out.push_back(view.size() > 4 ? view.substr(4) : std::string_view());
    }
    return out;
}

std::string Reply::joined() const {
    std::string out;
    for (const std::string& line : lines) {
        if (!out.empty()) out += ' ';
        out += line;
    }
    return out;
}

std::string Reply::dsn() const {
    if (!enhanced.empty()) return enhanced;
    return fmt::format("{}.0.0", kind());
}

ReplyParser::State ReplyParser::add(std::string_view line) {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP or "-"
    // (a bare code ends the reply too: RFC 5321 §4.2 allows no text).
    if (line.size() < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || !is_digit(line[2]) ||
        (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
        error_ = fmt::format("malformed reply line: {}", log::printable(line));
        reply_ = {};
        return State::error;
    }
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (!reply_.lines.empty() && code != reply_.code) {
        error_ = fmt::format("reply code changed within a multi-line reply: {}", log::printable(line));
        reply_ = {};
        return State::error;
    }
    if (reply_.lines.size() >= kMaxReplyLines) {
        error_ = fmt::format("reply longer than {} lines", kMaxReplyLines);
        reply_ = {};
        return State::error;
    }
    if (reply_.lines.empty()) {
        reply_.code = code;
        std::string_view code_text = leading_enhanced_code(line.size() > 4 ? line.substr(4) : std::string_view());
        // RFC 3463 §3.1: the class of the enhanced code matches the reply's.
        if (!code_text.empty() && code_text[0] == line[0]) reply_.enhanced = std::string(code_text);
    }
    reply_.lines.emplace_back(line);
    bool last = line.size() == 3 || line[3] == ' ';
    return last ? State::done : State::more;
}

Reply ReplyParser::take() {
    Reply out = std::move(reply_);
    reply_ = {};
    return out;
}

}  // namespace facteur::relayd
