// Base64 encoding and decoding, RFC 4648 §4 alphabet with padding.
#include "libmail/base64.hpp"

#include <cstdint>

namespace facteur::base64 {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int value_of(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

}  // namespace

std::string encode(std::string_view data) {
    std::string out;
    out.reserve((data.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= data.size(); i += 3) {
        uint32_t n = (static_cast<uint8_t>(data[i]) << 16) | (static_cast<uint8_t>(data[i + 1]) << 8) |
                     static_cast<uint8_t>(data[i + 2]);
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += kAlphabet[(n >> 6) & 63];
        out += kAlphabet[n & 63];
    }
    size_t rest = data.size() - i;
    if (rest == 1) {
        uint32_t n = static_cast<uint8_t>(data[i]) << 16;
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += "==";
    } else if (rest == 2) {
        uint32_t n = (static_cast<uint8_t>(data[i]) << 16) | (static_cast<uint8_t>(data[i + 1]) << 8);
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += kAlphabet[(n >> 6) & 63];
        out += '=';
    }
    return out;
}

// Strict (RFC 4648 §3.3, §3.5): only alphabet characters, padding only at the
// end and to a multiple of 4, and the unused bits before padding zero, so
// every input has exactly one encoding (no smuggling through variants).
std::optional<std::string> decode(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        bool last = i + 4 == text.size();
        int a = value_of(text[i]), b = value_of(text[i + 1]);
        if (a < 0 || b < 0) return std::nullopt;
        char c3 = text[i + 2], c4 = text[i + 3];
        if (c3 == '=') {
            // "xx==": only in the last group, and the unused bits must be zero.
            if (!last || c4 != '=' || (b & 0x0f) != 0) return std::nullopt;
            out += static_cast<char>((a << 2) | (b >> 4));
            continue;
        }
        int c = value_of(c3);
        if (c < 0) return std::nullopt;
        if (c4 == '=') {
            if (!last || (c & 0x03) != 0) return std::nullopt;
            out += static_cast<char>((a << 2) | (b >> 4));
            out += static_cast<char>(((b & 0x0f) << 4) | (c >> 2));
            continue;
        }
        int d = value_of(c4);
        if (d < 0) return std::nullopt;
        out += static_cast<char>((a << 2) | (b >> 4));
        out += static_cast<char>(((b & 0x0f) << 4) | (c >> 2));
        out += static_cast<char>(((c & 0x03) << 6) | d);
    }
    return out;
}

// RFC 2045 §6.8 lines are at most 76 characters with CRLF between them; we
// skip line breaks and blanks but still refuse other foreign characters.
std::optional<std::string> decode_lenient(std::string_view text) {
    std::string compact;
    compact.reserve(text.size());
    for (char c : text)
        if (c != '\r' && c != '\n' && c != ' ' && c != '\t') compact += c;
    return decode(compact);
}

}  // namespace facteur::base64
