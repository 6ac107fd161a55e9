// Received: header formatting (RFC 5321 §4.4, RFC 3848, RFC 5322 §3.6.7).
#include "smtpd/received_header.hpp"

#include <fmt/format.h>

namespace facteur::smtpd {

std::string protocol_name(bool extended, bool tls, bool authenticated) {
    if (!extended) return "SMTP";
    std::string name = "ESMTP";
    if (tls) name += "S";
    if (authenticated) name += "A";
    return name;
}

std::string header_safe(std::string_view text, size_t max_length) {
    std::string out;
    out.reserve(std::min(text.size(), max_length));
    for (char c : text.substr(0, max_length)) {
        auto byte = static_cast<unsigned char>(c);
        out += (byte < 0x21 || byte > 0x7e) ? '?' : c;
    }
    return out;
}

std::string received_header(const ReceivedInfo& info) {
    std::string host = info.client_hostname.empty() ? "unknown" : header_safe(info.client_hostname);
    std::string out = fmt::format("Received: from {} ({} [{}])\r\n", header_safe(info.helo), host,
                                  header_safe(info.client_address));
    out += fmt::format("\tby {} (facteur) with {} id {}", info.myhostname, info.protocol, info.queue_id);
    if (!info.tls_version.empty()) {
        out += fmt::format("\r\n\t(using {} with cipher {} ({}/{} bits))", header_safe(info.tls_version),
                           header_safe(info.tls_cipher), info.tls_bits, info.tls_bits);
    }
    if (!info.recipient.empty()) {
        // RFC 5321 §4.4: "for" only with a single recipient, so the other
        // recipients of a message are not disclosed.
        out += fmt::format("\r\n\tfor <{}>; {}\r\n", header_safe(info.recipient), info.date);
    } else {
        out += fmt::format(";\r\n\t{}\r\n", info.date);
    }
    return out;
}

}  // namespace facteur::smtpd
