// libFuzzer target for libmail/mime_downgrade: any input either is refused
// with a reason or comes out 7-bit, CRLF-only, with lines of at most 998 octets.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/mime_downgrade.hpp"

namespace {

bool keeps_invariants(std::string_view message) {
    size_t line_length = 0;
    for (size_t i = 0; i < message.size(); ++i) {
        auto c = static_cast<unsigned char>(message[i]);
        if (c >= 0x80 || c == 0) return false;
        if (c == '\r') {
            if (i + 1 >= message.size() || message[i + 1] != '\n') return false;
            ++i;
            line_length = 0;
            continue;
        }
        if (c == '\n') return false;
        if (++line_length > 998) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const bool eight_bit = facteur::mime::has_8bit(input);
    auto result = facteur::mime::downgrade_to_7bit(input);
    if (!eight_bit) {
        // Nothing to convert: returned exactly as it was.
        if (!result.ok() || *result != input) std::abort();
        return 0;
    }
    if (!result.ok()) {
        if (result.error().empty()) std::abort();
        return 0;
    }
    if (!keeps_invariants(*result)) std::abort();
    // The output needs no further conversion and is a fixed point.
    auto again = facteur::mime::downgrade_to_7bit(*result);
    if (!again.ok() || *again != *result) std::abort();
    return 0;
}
