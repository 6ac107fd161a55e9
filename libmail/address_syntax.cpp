// Lexical rules shared by the address parsers (see address_syntax.hpp).
#include "libmail/address_syntax.hpp"

#include <fmt/format.h>

namespace facteur::address::syntax {

namespace {

// True when `local` can be written as an RFC 5321/5322 dot-string.
bool is_dot_string(std::string_view local) {
    if (local.empty() || local.front() == '.' || local.back() == '.') return false;
    for (size_t i = 0; i < local.size(); ++i) {
        const auto c = static_cast<unsigned char>(local[i]);
        if (c == '.') {
            if (local[i - 1] == '.') return false;
        } else if (!is_atext(c) && c < 0x80) {
            return false;
        }
    }
    return true;
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
    auto byte = [&](size_t k) -> unsigned { return k < s.size() ? static_cast<unsigned char>(s[k]) : 0u; };
    const unsigned lead = byte(i);
    auto continuation = [&](size_t k, unsigned low = 0x80, unsigned high = 0xbf) {
        const unsigned b = byte(k);
        return k < s.size() && b >= low && b <= high;
    };
    if (lead >= 0xc2 && lead <= 0xdf) return continuation(i + 1) ? 2 : 0;
    if (lead >= 0xe0 && lead <= 0xef) {
        const unsigned low = lead == 0xe0 ? 0xa0 : 0x80;   // no overlongs
        const unsigned high = lead == 0xed ? 0x9f : 0xbf;  // no surrogates
        return continuation(i + 1, low, high) && continuation(i + 2) ? 3 : 0;
    }
    if (lead >= 0xf0 && lead <= 0xf4) {
        const unsigned low = lead == 0xf0 ? 0x90 : 0x80;
        const unsigned high = lead == 0xf4 ? 0x8f : 0xbf;
        return continuation(i + 1, low, high) && continuation(i + 2) && continuation(i + 3) ? 4 : 0;
    }
    return 0;
}

std::string describe_byte(unsigned char c) {
    switch (c) {
        case '\0': return "NUL";
        case '\r': return "CR";
        case '\n': return "LF";
        case '\t': return "TAB";
        case ' ': return "space";
        default: break;
    }
    if (is_control(c) || c >= 0x80) return fmt::format("byte 0x{:02x}", static_cast<unsigned>(c));
    return fmt::format("'{}'", static_cast<char>(c));
}

std::string quote_local_part(std::string_view local) {
    if (is_dot_string(local)) return std::string(local);
    std::string out = "\"";
    for (char c : local) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

}  // namespace facteur::address::syntax
