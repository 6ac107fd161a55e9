// Base64 (RFC 4648 §4): strict decoding for SASL and protocol fields,
// lenient (white space skipped) for MIME bodies (RFC 2045 §6.8).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace facteur::base64 {

std::string encode(std::string_view data);
// Rejects characters outside the alphabet, bad padding and bad lengths.
std::optional<std::string> decode(std::string_view text);
// Skips CR, LF, space and tab first (RFC 2045 §6.8 bodies).
std::optional<std::string> decode_lenient(std::string_view text);

}  // namespace facteur::base64
