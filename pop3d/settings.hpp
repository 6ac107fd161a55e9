// pop3d's settings, read once from facteur.conf: the global keys it needs
// (myhostname, auth_lookup_socket, TLS files) and the [pop3d] section.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "libmail/config.hpp"
#include "libmail/result.hpp"

namespace facteur::pop3d {

// Which rules a listening socket follows (from its inherited name).
enum class PortKind {
    pop3,   // 110: clear text, STLS offered when TLS is configured (RFC 2595)
    pop3s,  // 995: implicit TLS from the first byte (RFC 8314)
};
// "pop3.0" -> pop3, "pop3s.1" -> pop3s.
Result<PortKind> port_kind_from_socket_name(std::string_view name);
std::string_view port_kind_name(PortKind kind);

// Where USER/PASS and the PLAIN and LOGIN mechanisms work before TLS.
enum class PlaintextAuth { no, loopback, yes };
// "no", "loopback" or "yes"; anything else is an error.
Result<PlaintextAuth> parse_plaintext_auth(std::string_view text);
std::string_view plaintext_auth_name(PlaintextAuth policy);

struct Settings {
    std::string myhostname;
    std::string banner = "facteur POP3 ready";
    PlaintextAuth plaintext_auth = PlaintextAuth::loopback;
    bool apop = true;
    size_t command_line_limit = 4096;
    size_t login_failure_limit = 3;
    std::chrono::milliseconds auth_failure_delay{1000};
    size_t error_limit = 50;
    std::chrono::milliseconds login_idle_timeout{60000};
    std::chrono::milliseconds idle_timeout{600000};
    size_t client_connection_limit = 50;
    size_t session_limit = 1000;
    std::string auth_lookup_socket;
    std::string tls_cert_file, tls_key_file;

    bool tls_configured() const { return !tls_cert_file.empty() && !tls_key_file.empty(); }
};

// Errors (a bad plaintext_auth, no usable host name) stop the daemon.
Result<Settings> load_settings(const config::Config& config);

}  // namespace facteur::pop3d
