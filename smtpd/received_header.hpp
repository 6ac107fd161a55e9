// The Received: trace header smtpd prepends to every message (RFC 5321
// §4.4), with the protocol names of RFC 3848. Pure text formatting.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

namespace facteur::smtpd {

struct ReceivedInfo {
    std::string helo;            // as the client gave it (made printable here)
    std::string client_hostname; // PTR name; empty = "unknown"
    std::string client_address;  // numeric IP
    std::string myhostname;
    std::string protocol;        // from protocol_name()
    std::string queue_id;
    std::string tls_version;     // empty = no TLS
    std::string tls_cipher;
    int tls_bits = 0;
    std::string recipient;       // only with exactly one recipient
    std::string date;            // RFC 5322 date-time (message::format_date)
};

// RFC 3848: SMTP (HELO), ESMTP, ESMTPA, ESMTPS, ESMTPSA.
std::string protocol_name(bool extended, bool tls, bool authenticated);

// The whole field, CRLF line endings, folded with tabs, ending in CRLF.
std::string received_header(const ReceivedInfo& info);

// Untrusted text for a header: bytes outside printable ASCII become '?',
// and the length is capped so the field stays within RFC 5322 limits.
std::string header_safe(std::string_view text, size_t max_length = 255);

}  // namespace facteur::smtpd
