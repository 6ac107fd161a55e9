// libFuzzer target for the mbox parsing pop3d runs over mail files (which
// hold untrusted message bytes): the scanner and the message filter, with
// their invariants checked: same result whatever the chunking, messages in
// order inside the input, sizes equal to the filtered bytes' served size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/mailbox.hpp"
#include "libmail/mailbox_mbox_parse.hpp"

using namespace facteur::store;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string uids, uids_bytewise;
    std::vector<detail::MboxMessage> messages, messages_bytewise;
    detail::MboxScanner scanner(uids, messages), bytewise(uids_bytewise, messages_bytewise);
    scanner.feed(input);
    for (size_t i = 0; i < input.size(); ++i) bytewise.feed(input.substr(i, 1));
    if (!scanner.finish().ok() || !bytewise.finish().ok()) std::abort();
    if (uids != uids_bytewise || messages.size() != messages_bytewise.size()) std::abort();
    uint64_t previous_end = 0;
    for (size_t i = 0; i < messages.size(); ++i) {
        const detail::MboxMessage& m = messages[i];
        const detail::MboxMessage& b = messages_bytewise[i];
        if (m.from_offset != b.from_offset || m.content_start != b.content_start || m.content_end != b.content_end ||
            m.header_end != b.header_end || m.size != b.size || m.seen != b.seen || m.from_hash != b.from_hash)
            std::abort();
        if (m.from_offset < previous_end || m.content_start < m.from_offset || m.content_end < m.content_start ||
            m.header_end < m.content_start || m.header_end > m.content_end || m.content_end > size)
            std::abort();
        previous_end = m.content_end;
        // What a reader would return for this message has exactly the size
        // the scan reported.
        detail::MboxFilter filter;
        std::string out;
        filter.feed(input.substr(m.content_start, m.content_end - m.content_start), out);
        filter.finish(out);
        if (served_size(out) != m.size || filter.seen() != m.seen) std::abort();
    }
    return 0;
}
