// sendmail's standard input turned into a message: every line ending made
// CRLF (RFC 5322 §2.1; the queue stores what SMTP would carry), the "."
// line that ends input without -i, and the header section split from the
// body while the rest streams on. Pure state machines, fed by the caller.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "libmail/result.hpp"

namespace facteur::sendmail {

// LF, CR LF and a lone CR each end a line and become CR LF. Without
// ignore_dots a line holding only "." ends the input (sendmail(1)); with it
// (-i, -oi) such a line is message text. Lines starting with "." are never
// unstuffed: this is not SMTP.
class LineNormalizer {
public:
    explicit LineNormalizer(bool ignore_dots) : ignore_dots_(ignore_dots) {}
    // Appends the normalized form of `chunk` to `out`. Returns true once the
    // end of the message was seen; later input is ignored.
    bool feed(std::string_view chunk, std::string& out);
    // End of file: a last line without a line ending gets one.
    void finish(std::string& out);
    bool ended() const { return ended_; }

private:
    void end_line(std::string& out);
    bool ignore_dots_;
    bool pending_cr_ = false;  // a CR whose successor decides CRLF or lone CR
    bool line_start_ = true;
    bool held_dot_ = false;    // the line so far is "."
    bool ended_ = false;
};

// Splits normalized text (CRLF lines) into the header section and the body.
// The header ends at the first empty line, or at the first line that is
// neither a header field nor a continuation (that line starts the body).
// A leading mbox "From " line (Unix From, as mail(1) pipes it) is dropped.
class HeaderSplitter {
public:
    explicit HeaderSplitter(size_t max_header) : max_header_(max_header) {}
    // Fails when the header section grows past max_header.
    Status feed(std::string_view text);
    // End of input: whatever is buffered is header.
    void finish();
    bool header_complete() const { return complete_; }
    // Valid once complete: the fields, each line ending in CRLF, without the
    // empty separator line.
    const std::string& header() const { return header_; }
    // True when an empty line separated header and body.
    bool had_separator() const { return separator_; }
    // Body text received so far; the caller drains it.
    std::string take_body();

private:
    Status take_line(std::string_view line);  // line includes its CRLF
    size_t max_header_;
    std::string pending_;  // incomplete header line(s), then body text
    std::string header_;
    bool complete_ = false;
    bool separator_ = false;
    bool first_line_ = true;
};

// RFC 5322 §2.2 / §4.5.3: field-name (printable ASCII but ':') then
// optional whitespace and ':'.
bool is_header_field_line(std::string_view line);

}  // namespace facteur::sendmail
