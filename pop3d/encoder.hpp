// The wire form of a stored message in a POP3 multi-line response (RFC 1939
// §3): LF line endings become CRLF, lines starting with "." are
// byte-stuffed, TOP keeps the header and the first n body lines (§7), and
// ".\r\n" ends it. Pure and streaming: chunks may split lines anywhere.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace facteur::pop3d {

class Encoder {
public:
    // nullopt: the whole message (RETR); n: TOP with n body lines.
    explicit Encoder(std::optional<uint64_t> body_lines = std::nullopt) : body_lines_(body_lines) {}

    // Appends the wire form of the next chunk of stored bytes to `out`.
    // Input after done() is ignored.
    void feed(std::string_view chunk, std::string& out);
    // TOP: every byte wanted was emitted; the caller may stop reading.
    bool done() const { return done_; }
    // Appends the end of the response: a CRLF when the message did not end
    // with a line end, then ".\r\n". Call once.
    void finish(std::string& out);

    // Bytes of the message emitted so far, without the stuffing dots (for
    // RETR this ends equal to store::served_size of the stored bytes).
    uint64_t content_bytes() const { return content_bytes_; }

private:
    void end_of_line();

    std::optional<uint64_t> body_lines_;
    uint64_t body_lines_sent_ = 0;
    uint64_t content_bytes_ = 0;
    bool at_line_start_ = true;
    bool last_was_cr_ = false;
    bool line_is_only_cr_ = false;  // the current line so far is exactly "\r"
    bool in_header_ = true;
    bool done_ = false;
    bool finished_ = false;
};

}  // namespace facteur::pop3d
