// Streaming conversion of stored message bytes to a POP3 multi-line
// response (see encoder.hpp).
#include "pop3d/encoder.hpp"

#include "libmail/panic.hpp"

namespace facteur::pop3d {

void Encoder::end_of_line() {
    // An empty line (LF or CRLF alone) ends the header (RFC 5322 §2.1).
    bool empty_line = at_line_start_ || line_is_only_cr_;
    at_line_start_ = true;
    line_is_only_cr_ = false;
    if (!body_lines_) return;
    if (in_header_) {
        if (empty_line) {
            in_header_ = false;
            if (*body_lines_ == 0) done_ = true;
        }
        return;
    }
    if (++body_lines_sent_ >= *body_lines_) done_ = true;
}

void Encoder::feed(std::string_view chunk, std::string& out) {
    if (done_ || finished_) return;
    out.reserve(out.size() + chunk.size() + chunk.size() / 16 + 2);
    size_t i = 0;
    while (i < chunk.size() && !done_) {
        // Copy the run of ordinary bytes up to the next LF in one go.
        size_t end = chunk.find('\n', i);
        std::string_view run = chunk.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
        if (!run.empty()) {
            // RFC 1939 §3: a line starting with the termination octet gets
            // another one in front.
            if (at_line_start_ && run.front() == '.') out += '.';
            line_is_only_cr_ = at_line_start_ ? run == "\r" : false;
            out.append(run);
            content_bytes_ += run.size();
            at_line_start_ = false;
            last_was_cr_ = run.back() == '\r';
            i += run.size();
        }
        if (end == std::string_view::npos) break;
        // The LF itself: a CR before it (maybe in the previous chunk) is kept
        // as is, a bare LF gets one — the same rule as store::served_size.
        if (!last_was_cr_) {
            out += '\r';
            ++content_bytes_;
        }
        out += '\n';
        ++content_bytes_;
        last_was_cr_ = false;
        ++i;
        end_of_line();
    }
}

void Encoder::finish(std::string& out) {
    if (finished_) panic("pop3d Encoder::finish called twice");
    finished_ = true;
    // The terminator must start a line of its own (RFC 1939 §3).
    if (!at_line_start_) out += "\r\n";
    out += ".\r\n";
}

}  // namespace facteur::pop3d
