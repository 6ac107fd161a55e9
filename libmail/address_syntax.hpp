// Lexical rules shared by the RFC 5321 path parser (address.cpp) and the
// RFC 5322 address-list parser (address_list.cpp); internal to the address module.
#pragma once

#include "libmail/ascii.hpp"

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace facteur::address::syntax {

inline bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
inline bool is_let_dig(unsigned char c) { return is_alpha(c) || is_digit(c); }
using ascii::to_lower;
inline char to_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
inline bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// RFC 5322 §3.2.3 atext (RFC 5321 §4.1.2 uses the same set).
inline bool is_atext(unsigned char c) {
    if (is_let_dig(c)) return true;
    return c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

// ASCII case-insensitive comparison (keywords, tags, "Postmaster").
using ascii::iequals;

// Length of the well-formed UTF-8 sequence starting at s[i], or 0. Rejects
// overlong forms, surrogates and code points past U+10FFFF (RFC 3629 §4),
// as RFC 6531 §3.3 and RFC 6532 §3.1 require.
size_t utf8_sequence_length(std::string_view s, size_t i);

// A byte named for an error message; never echoes a raw control or 8-bit byte.
std::string describe_byte(unsigned char c);

// The local part as it goes on the wire: a dot-string when possible, else a
// quoted-string escaping only '"' and '\' (RFC 5321 §4.1.2 quoted-pairSMTP).
std::string quote_local_part(std::string_view local);

}  // namespace facteur::address::syntax
