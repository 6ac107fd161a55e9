// The POP3 command line parser (RFC 1939 §3, RFC 2449 §3): one received line
// in, the keyword and its arguments out; and the parsers for message numbers
// and TOP's line count. Pure, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace facteur::pop3d {

enum class Keyword { capa, user, pass, apop, auth, stls, quit, noop, stat, list, retr, dele, rset, top, uidl, last, unknown };

enum class CommandError {
    none,
    empty,            // nothing but the line ending
    bad_character,    // NUL or a CR that does not end the line
    unknown_command,  // not one of our keywords (or not a 1-4 letter word)
};

struct Command {
    Keyword keyword = Keyword::unknown;
    std::string_view name;  // the keyword as sent (letters only when error is none or unknown_command)
    // Everything after the keyword and its single space, line ending
    // removed and nothing else: PASS takes it whole, since a password may
    // contain or end in spaces (RFC 1939 §7).
    std::string_view rest;
    // `rest` without trailing spaces and tabs, split at each single space
    // (RFC 1939 §3: "separated by a single SPACE character"); two spaces in a
    // row give an empty argument, which every command refuses.
    std::vector<std::string_view> arguments;
    CommandError error = CommandError::none;
};

// `line` as read from the connection: normally ending in CRLF; a bare LF is
// accepted as the end too (sloppy clients), a bare CR never is. A line
// without any line ending is parsed as if it had one.
Command parse_command(std::string_view line);

// The line without its final CRLF or LF (for SASL responses).
std::string_view strip_line_ending(std::string_view line);

std::string_view keyword_name(Keyword keyword);

// A non-empty run of ASCII digits (no sign, no '+', no spaces) that fits in
// uint64_t; leading zeros are allowed ("007" is 7).
std::optional<uint64_t> parse_decimal(std::string_view text);

// A message number (RFC 1939 §3: 1-based) for a mailbox of `count`
// messages: nullopt unless 1 <= n <= count.
std::optional<size_t> parse_message_number(std::string_view text, size_t count);

}  // namespace facteur::pop3d
