// libFuzzer target for libmail/address: SMTP paths, MAIL/RCPT arguments, ESMTP
// parameters and RFC 5322 address lists, with round-trip checks of the canonical forms.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "libmail/address.hpp"

using namespace facteur::address;

namespace {

// A parsed path printed canonically must parse back to the same mailbox.
void check_round_trip(const Path& path, PathOptions options) {
    if (path.is_null) return;
    auto again = parse_path("<" + path.to_string() + ">", options);
    if (!again.ok() || again->local_part != path.local_part || again->domain != path.domain) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    for (bool utf8 : {false, true}) {
        PathOptions options;
        options.allow_null = true;
        options.allow_utf8 = utf8;
        options.allow_postmaster = utf8;
        if (auto path = parse_path(input, options); path.ok()) {
            check_round_trip(*path, options);
            (void)path->normalized();
        }
        if (auto argument = parse_mail_argument(input, options); argument.ok()) {
            check_round_trip(argument->first, options);
        }
    }

    (void)parse_esmtp_parameters(input);
    (void)is_valid_domain(input, true);
    (void)lowercase_domain(input);

    if (auto list = parse_address_list(input); list.ok()) {
        for (const Mailbox& mailbox : *list) {
            // The canonical address is itself a valid one-mailbox list.
            auto again = parse_mailbox(mailbox.address());
            if (!again.ok() || again->local_part != mailbox.local_part) std::abort();
        }
    }
    (void)parse_mailbox(input);
    return 0;
}
