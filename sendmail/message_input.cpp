// Line-ending normalization and header/body splitting for sendmail's input
// (sendmail/message_input.hpp).
#include "sendmail/message_input.hpp"

#include <fmt/format.h>

namespace facteur::sendmail {

void LineNormalizer::end_line(std::string& out) {
    if (held_dot_) {
        // The line was exactly "." (only held when dots end the input).
        held_dot_ = false;
        ended_ = true;
        return;
    }
    out += "\r\n";
    line_start_ = true;
}

bool LineNormalizer::feed(std::string_view chunk, std::string& out) {
    for (char c : chunk) {
        if (ended_) return true;
        if (pending_cr_) {
            pending_cr_ = false;
            end_line(out);
            if (ended_) return true;
            if (c == '\n') continue;  // CR LF: one line ending
            // A lone CR ended its line; c starts the next one.
        }
        if (c == '\r') {
            pending_cr_ = true;
            continue;
        }
        if (c == '\n') {
            end_line(out);
            continue;
        }
        if (held_dot_) {
            // More than "." on this line: it is text after all.
            out += '.';
            held_dot_ = false;
        } else if (line_start_ && c == '.' && !ignore_dots_) {
            held_dot_ = true;
            line_start_ = false;
            continue;
        }
        out += c;
        line_start_ = false;
    }
    return ended_;
}

void LineNormalizer::finish(std::string& out) {
    if (ended_) return;
    if (pending_cr_) {
        pending_cr_ = false;
        end_line(out);
        return;
    }
    if (held_dot_) {
        // "." as the very last line, without a line ending: still the end.
        held_dot_ = false;
        ended_ = true;
        return;
    }
    if (!line_start_) out += "\r\n";
    line_start_ = true;
}

bool is_header_field_line(std::string_view line) {
    size_t position = 0;
    while (position < line.size() && line[position] >= 33 && line[position] <= 126 && line[position] != ':') ++position;
    if (position == 0) return false;
    // obs-optional (RFC 5322 §4.5.3): whitespace before the colon.
    while (position < line.size() && (line[position] == ' ' || line[position] == '\t')) ++position;
    return position < line.size() && line[position] == ':';
}

Status HeaderSplitter::take_line(std::string_view line) {
    std::string_view content = line.substr(0, line.size() - 2);  // without CRLF
    bool first = first_line_;
    first_line_ = false;
    if (content.empty()) {
        complete_ = true;
        separator_ = true;
        return {};
    }
    // mail(1) and mbox tools may pipe a Unix From line first; it is not a
    // header field and must not end the header.
    if (first && content.starts_with("From ")) return {};
    bool continuation = (content[0] == ' ' || content[0] == '\t') && !header_.empty();
    if (!continuation && !is_header_field_line(content)) {
        complete_ = true;
        return {};
    }
    if (header_.size() + line.size() > max_header_)
        return make_error(fmt::format("the message header is larger than {} bytes", max_header_));
    header_.append(line);
    return {};
}

Status HeaderSplitter::feed(std::string_view text) {
    if (complete_) {
        pending_.append(text);
        return {};
    }
    pending_.append(text);
    size_t start = 0;
    while (!complete_) {
        size_t end = pending_.find("\r\n", start);
        if (end == std::string::npos) break;
        std::string_view line(pending_.data() + start, end + 2 - start);
        size_t before = header_.size();
        if (Status s = take_line(line); !s) return s;
        // A line that ended the header without being a separator is body.
        if (complete_ && !separator_ && header_.size() == before) break;
        start = end + 2;
    }
    pending_.erase(0, start);
    if (!complete_ && pending_.size() > max_header_)
        return make_error(fmt::format("the message header is larger than {} bytes", max_header_));
    return {};
}

void HeaderSplitter::finish() {
    if (complete_) return;
    // The normalizer ends every line, so nothing partial is left; a header
    // without body is still a message.
    complete_ = true;
}

std::string HeaderSplitter::take_body() {
    if (!complete_) return {};
    std::string body;
    body.swap(pending_);
    return body;
}

}  // namespace facteur::sendmail
