// smtpd's settings, read once from facteur.conf: the global mail-flow keys
// and the [smtpd] or [submission] section named by the service.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/config.hpp"
#include "libmail/result.hpp"
#include "smtpd/relay_policy.hpp"

namespace facteur::smtpd {

// Which rules a listening socket follows (from its inherited name).
enum class PortKind {
    smtp,         // 25: mail for local domains from anyone, relay for mynetworks/AUTH
    submission,   // 587: STARTTLS, AUTH required before MAIL (RFC 6409)
    submissions,  // 465: implicit TLS, AUTH required (RFC 8314)
};
// "smtp.0" -> smtp, "submission.1" -> submission, "submissions.0" -> submissions.
Result<PortKind> port_kind_from_socket_name(std::string_view name);
std::string_view port_kind_name(PortKind kind);

struct Settings {
    std::string service;  // "smtpd" or "submission"
    std::string myhostname;
    std::string banner;
    uint64_t message_size_limit = 0;
    size_t command_line_limit = 4096;
    size_t data_line_limit = 1 << 20;
    size_t recipient_limit = 1000;
    size_t error_limit = 20;
    std::chrono::milliseconds idle_timeout{300000};
    size_t client_connection_limit = 50;
    size_t session_limit = 1000;
    size_t hop_count_limit = 50;
    bool enable_expn = false;
    bool auth_requires_tls = true;
    Networks mynetworks;
    std::string spool_dir, auth_lookup_socket, qmgr_socket;
    std::string tls_cert_file, tls_key_file;

    bool tls_configured() const { return !tls_cert_file.empty() && !tls_key_file.empty(); }
};

// Errors (a mynetworks entry of length 0, a bad network) stop the daemon.
Result<Settings> load_settings(const config::Config& config, std::string_view service);

}  // namespace facteur::smtpd
