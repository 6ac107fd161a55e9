// libFuzzer target for libmail/ipc frame decoding: arbitrary bytes must never
// crash the decoder, and every frame it accepts must re-encode to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/ipc.hpp"

using namespace facteur::ipc;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    // Decode every frame in the input, as a server reading a stream does;
    // a small limit also exercises the oversized-frame path.
    for (size_t max_frame : {size_t{64}, kDefaultMaxFrame}) {
        std::string_view rest = input;
        for (;;) {
            Frame frame;
            size_t consumed = 0;
            std::string error;
            DecodeStatus status = decode(rest, frame, consumed, error, max_frame);
            if (status != DecodeStatus::complete) {
                if (status == DecodeStatus::error && error.empty()) std::abort();
                break;
            }
            if (consumed < 5 || consumed > rest.size()) std::abort();
            // Canonical encoding: what was accepted is exactly what encode gives.
            if (encode(frame) != rest.substr(0, consumed)) std::abort();
            for (const auto& [name, value] : frame.attributes) {
                if (name.empty() || name.size() > kMaxNameLength) std::abort();
                if (frame.get(name).has_value() == false) std::abort();
            }
            rest.remove_prefix(consumed);
        }
    }
    return 0;
}
