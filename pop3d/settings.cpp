// Reading pop3d's settings from the configuration (see settings.hpp).
#include "pop3d/settings.hpp"

#include <fmt/format.h>

#include "libmail/daemon.hpp"

namespace facteur::pop3d {

Result<PortKind> port_kind_from_socket_name(std::string_view name) {
    std::string_view kind = name.substr(0, name.find('.'));
    if (kind == "pop3") return PortKind::pop3;
    if (kind == "pop3s") return PortKind::pop3s;
    return make_error(fmt::format("unexpected inherited socket {} (want pop3.N or pop3s.N)", name));
}

std::string_view port_kind_name(PortKind kind) { return kind == PortKind::pop3s ? "pop3s" : "pop3"; }

Result<PlaintextAuth> parse_plaintext_auth(std::string_view text) {
    if (text == "no") return PlaintextAuth::no;
    if (text == "loopback") return PlaintextAuth::loopback;
    if (text == "yes") return PlaintextAuth::yes;
    return make_error(fmt::format("[pop3d] plaintext_auth: \"{}\" is not one of no, loopback, yes", text));
}

std::string_view plaintext_auth_name(PlaintextAuth policy) {
    switch (policy) {
        case PlaintextAuth::no: return "no";
        case PlaintextAuth::loopback: return "loopback";
        case PlaintextAuth::yes: return "yes";
    }
    return "loopback";
}

Result<Settings> load_settings(const config::Config& config) {
    constexpr std::string_view section = "pop3d";
    Settings s;
    auto hostname = daemon::host_name(config);
    if (!hostname) return make_error(hostname.error());
    s.myhostname = *hostname;
    s.banner = config.string(section, "banner");
    auto policy = parse_plaintext_auth(config.string(section, "plaintext_auth"));
    if (!policy) return make_error(policy.error());
    s.plaintext_auth = *policy;
    s.apop = config.boolean(section, "apop");
    // The table bounds every value (config_parameters.cpp), so the casts
    // below cannot go negative or overflow.
    s.command_line_limit = static_cast<size_t>(config.size(section, "command_line_limit"));
    s.login_failure_limit = static_cast<size_t>(config.integer(section, "login_failure_limit"));
    s.auth_failure_delay = config.duration(section, "auth_failure_delay");
    s.error_limit = static_cast<size_t>(config.integer(section, "error_limit"));
    s.login_idle_timeout = config.duration(section, "login_idle_timeout");
    s.idle_timeout = config.duration(section, "idle_timeout");
    s.client_connection_limit = static_cast<size_t>(config.integer(section, "client_connection_limit"));
    s.session_limit = static_cast<size_t>(config.integer(section, "session_limit"));
    s.auth_lookup_socket = config.path("", "auth_lookup_socket");
    s.tls_cert_file = config.path("", "tls_cert_file");
    s.tls_key_file = config.path("", "tls_key_file");
    return s;
}

}  // namespace facteur::pop3d
