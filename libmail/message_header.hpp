// RFC 5322 message header handling that several daemons need: finding the
// end of the header, listing fields, counting, removing and adding fields,
// and the date format. Pure functions over text; no I/O.
#pragma once

#include <cstddef>
#include <ctime>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace facteur::message {

// One header field: `raw` is the whole field as in the message, continuation
// lines and the final line ending included; `name` is the field name (no
// colon, as written); `value` is everything after the colon up to the final
// line ending, folding kept.
struct HeaderField {
    std::string_view name;
    std::string_view value;
    std::string_view raw;
};

// Length of the header section including the empty line that ends it
// (RFC 5322 §2.1), so message.substr(result) is the body. Lines may end in
// CRLF or LF. A message without an empty line is all header. A first line
// that is not a header field (no colon, starts with whitespace) means the
// header is empty (returns 0).
size_t header_length(std::string_view message);

// The fields of a header section (as returned by header_length, the empty
// line may be included or not). Lines that are not fields are skipped.
std::vector<HeaderField> parse_header(std::string_view header);

bool same_name(std::string_view a, std::string_view b);  // ASCII case-insensitive
size_t count_fields(std::string_view header, std::string_view name);
bool has_field(std::string_view header, std::string_view name);
// The unfolded value of the first field called `name` (leading/trailing
// whitespace trimmed), or empty.
std::string field_value(std::string_view header, std::string_view name);

// The message with every header field named in `names` removed (body and
// other fields byte for byte unchanged).
std::string remove_fields(std::string_view message, std::initializer_list<std::string_view> names);

// RFC 5322 §3.3 date-time in local time with numeric zone:
// "Mon, 23 Nov 2026 10:00:00 +0100".
std::string format_date(std::time_t time);

// Unfolds (RFC 5322 §2.2.3): CRLF/LF followed by whitespace becomes that
// whitespace.
std::string unfold(std::string_view value);

}  // namespace facteur::message
