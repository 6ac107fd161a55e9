// libFuzzer target for the queue's untrusted-input parsers: the envelope
// record (maildrop files are written by any local user) and the status log.
// Nothing may crash; an accepted envelope must survive a re-encode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "libmail/queue.hpp"

using namespace facteur::queue;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    auto envelope = decode_envelope(input);
    if (envelope) {
        auto again = decode_envelope(encode_envelope(*envelope));
        if (!again || again->recipients.size() != envelope->recipients.size() || again->sender != envelope->sender)
            std::abort();
    }
    StatusLog log = parse_status_log(input, 3);
    if (log.recipients.size() != 3) std::abort();
    return 0;
}
