// Incremental processing of a message body as it arrives, with bounded
// memory: DATA lines (RFC 5321 §4.5.2 dot-unstuffing, end of data only at
// CRLF.CRLF) and BDAT chunks (RFC 3030) share one scanner that enforces
// the size and line limits, refuses bare CR/LF (SMTP smuggling) and counts
// Received: headers (RFC 5321 §6.3 loop detection). Pure, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace facteur::smtpd {

// The first problem found in a message; the message is refused at its end.
enum class BodyError { none, bare_line_ending, line_too_long, too_large, too_many_hops };

struct BodyLimits {
    uint64_t max_size = UINT64_MAX;  // bytes of message data
    size_t max_line_length = 0;      // including CRLF; 0 = no limit (BINARYMIME)
    size_t max_received = SIZE_MAX;  // Received: fields allowed in the header
    bool check_line_endings = true;  // false only for BODY=BINARYMIME
};

class BodyScanner {
public:
    explicit BodyScanner(BodyLimits limits) : limits_(limits) {}

    // Message bytes in order, in pieces of any size.
    void consume(std::string_view bytes);
    // The message is complete: a CR at its very end is a bare CR.
    void finish();
    // A line was dropped unread because it was too long (the connection
    // discarded it to keep memory bounded); the next byte starts a line.
    void line_discarded();

    BodyError error() const { return error_; }
    uint64_t size() const { return size_; }
    bool in_header() const { return in_header_; }
    size_t received_count() const { return received_; }
    bool has_message_id() const { return has_message_id_; }
    bool has_date() const { return has_date_; }

private:
    void fail(BodyError error) {
        if (error_ == BodyError::none) error_ = error;
    }
    void header_byte(char c);
    void end_of_field_name();

    BodyLimits limits_;
    BodyError error_ = BodyError::none;
    uint64_t size_ = 0;
    size_t line_length_ = 0;
    bool previous_cr_ = false;
    // Header scanning (RFC 5322 §2.2): only a field name prefix is kept.
    bool in_header_ = true;
    bool at_line_start_ = true;
    enum class NameState { collecting, done } name_state_ = NameState::done;
    char name_[16] = {};
    size_t name_length_ = 0;
    bool name_overflow_ = false;
    size_t received_ = 0;
    bool has_message_id_ = false;
    bool has_date_ = false;
};

// DATA: lines as the connection delivers them (each ending in "\n").
class DataReader {
public:
    explicit DataReader(BodyLimits limits) : scanner_(limits) {}

    enum class Step { content, end };
    // On content, `content` is the line with its dot-stuffing removed, to
    // be stored; on end, the message is complete (the ".\r\n" is not data).
    Step feed_line(std::string_view line, std::string_view& content);
    // The connection dropped an over-long line.
    void feed_too_long_line();

    const BodyScanner& scanner() const { return scanner_; }
    BodyError error() const { return scanner_.error(); }
    uint64_t size() const { return scanner_.size(); }
    // The end came right after a discarded line, whose line ending is
    // unknown: the session must not trust what follows as commands.
    bool ended_after_discarded_line() const { return ended_after_discarded_; }

private:
    BodyScanner scanner_;
    // RFC 5321 §4.1.1.4: the end is CRLF "." CRLF, so "." CRLF ends the
    // data only after a line that ended in CRLF (or at the very start).
    bool previous_line_crlf_ = true;
    bool previous_line_discarded_ = false;
    bool ended_after_discarded_ = false;
};

}  // namespace facteur::smtpd
