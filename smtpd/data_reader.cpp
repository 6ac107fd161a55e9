// Streaming checks of message data for DATA and BDAT (see data_reader.hpp).
#include "smtpd/data_reader.hpp"

#include "libmail/ascii.hpp"

namespace facteur::smtpd {

void BodyScanner::end_of_field_name() {
    name_state_ = NameState::done;
    if (name_overflow_) return;
    // RFC 5322 §4.5.3 obsolete syntax allows blanks before the colon.
    size_t length = name_length_;
    while (length > 0 && (name_[length - 1] == ' ' || name_[length - 1] == '\t')) --length;
    std::string_view name(name_, length);
    if (ascii::iequals(name, "Received")) {
        ++received_;
        if (received_ > limits_.max_received) fail(BodyError::too_many_hops);
    } else if (ascii::iequals(name, "Message-ID")) {
        has_message_id_ = true;
    } else if (ascii::iequals(name, "Date")) {
        has_date_ = true;
    }
}

void BodyScanner::header_byte(char c) {
    if (at_line_start_) {
        at_line_start_ = false;
        if (c == '\r' || c == '\n') {
            // The empty line ending the header section (RFC 5322 §2.1).
            in_header_ = false;
            return;
        }
        if (c == ' ' || c == '\t') {
            name_state_ = NameState::done;  // a continuation line
            return;
        }
        name_state_ = NameState::collecting;
        name_length_ = 0;
        name_overflow_ = false;
    }
    if (name_state_ != NameState::collecting) return;
    if (c == ':') {
        end_of_field_name();
        return;
    }
    auto byte = static_cast<unsigned char>(c);
    if (c == '\r' || c == '\n' || byte < 0x20 || byte >= 0x7f) {
        // Not a header field: RFC 5322 §2.1 says the body starts here.
        name_state_ = NameState::done;
        in_header_ = false;
        return;
    }
    if (name_length_ < sizeof name_) {
        name_[name_length_++] = c;
    } else {
        name_overflow_ = true;  // longer than any field we look for
    }
}

void BodyScanner::consume(std::string_view bytes) {
    size_ += bytes.size();
    if (size_ > limits_.max_size) fail(BodyError::too_large);
    for (char c : bytes) {
        if (in_header_) header_byte(c);
        ++line_length_;
        if (c == '\n') {
            if (limits_.check_line_endings && !previous_cr_) fail(BodyError::bare_line_ending);
            if (limits_.max_line_length != 0 && line_length_ > limits_.max_line_length) fail(BodyError::line_too_long);
            line_length_ = 0;
            previous_cr_ = false;
            at_line_start_ = true;
            continue;
        }
        if (previous_cr_ && limits_.check_line_endings) fail(BodyError::bare_line_ending);
        previous_cr_ = c == '\r';
    }
    // A line still open and already too long need not wait for its end.
    if (limits_.max_line_length != 0 && line_length_ > limits_.max_line_length) fail(BodyError::line_too_long);
}

void BodyScanner::finish() {
    if (previous_cr_ && limits_.check_line_endings) fail(BodyError::bare_line_ending);
}

void BodyScanner::line_discarded() {
    fail(BodyError::line_too_long);
    line_length_ = 0;
    previous_cr_ = false;
    at_line_start_ = true;
}

DataReader::Step DataReader::feed_line(std::string_view line, std::string_view& content) {
    if (line == ".\r\n" && previous_line_crlf_) {
        ended_after_discarded_ = previous_line_discarded_;
        scanner_.finish();
        content = {};
        return Step::end;
    }
    previous_line_discarded_ = false;
    previous_line_crlf_ = line.size() >= 2 && line.substr(line.size() - 2) == "\r\n";
    // RFC 5321 §4.5.2: a leading "." was doubled by the client.
    if (!line.empty() && line.front() == '.') line.remove_prefix(1);
    scanner_.consume(line);
    content = line;
    return Step::content;
}

void DataReader::feed_too_long_line() {
    scanner_.line_discarded();
    // The connection dropped the line through its "\n" without telling
    // whether a CR preceded it. The message is refused anyway; a following
    // "." CRLF is taken as the end so an honest client is not left waiting,
    // and ended_after_discarded_line() tells the session to close after
    // its reply, so a smuggled "\n.\r\n" can never start a new command.
    previous_line_crlf_ = true;
    previous_line_discarded_ = true;
}

}  // namespace facteur::smtpd
