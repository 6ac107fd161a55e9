// The SMTP service extensions a server announces in its EHLO reply
// (RFC 5321 §4.1.1.1), as relayd uses them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "relayd/smtp_reply.hpp"

namespace facteur::relayd {

struct Capabilities {
    bool esmtp = false;                // EHLO was accepted (false after a HELO fallback)
    bool pipelining = false;           // RFC 2920
    bool size = false;                 // RFC 1870
    uint64_t size_limit = 0;           // 0 = none announced
    bool eightbitmime = false;         // RFC 6152
    bool smtputf8 = false;             // RFC 6531
    bool dsn = false;                  // RFC 3461
    bool starttls = false;             // RFC 3207
    bool enhancedstatuscodes = false;  // RFC 2034
    bool chunking = false;             // RFC 3030 (not used: we always send DATA)
    std::vector<std::string> auth;     // RFC 4954 mechanisms, upper case

    bool has_auth(std::string_view mechanism) const;
};

// Pure: the capabilities in a 250 EHLO reply (the first line is the
// greeting and is skipped). Keywords are case-insensitive; unknown ones
// are ignored; "AUTH=PLAIN LOGIN" (the pre-RFC 4954 form) counts as AUTH.
Capabilities parse_ehlo(const Reply& reply);

}  // namespace facteur::relayd
