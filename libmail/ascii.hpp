// Locale-independent ASCII case helpers for protocol keywords, domains and
// local parts (mail compares these case-insensitively in ASCII only).
#pragma once

#include <string>
#include <string_view>

namespace facteur::ascii {

inline char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline std::string lowercase(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = to_lower(c);
    return out;
}

inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (to_lower(a[i]) != to_lower(b[i])) return false;
    return true;
}

}  // namespace facteur::ascii
