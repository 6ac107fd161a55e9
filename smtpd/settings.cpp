// Reading smtpd's settings from the configuration (see settings.hpp).
#include "smtpd/settings.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include "libmail/daemon.hpp"

namespace facteur::smtpd {

Result<PortKind> port_kind_from_socket_name(std::string_view name) {
    std::string_view kind = name.substr(0, name.find('.'));
    if (kind == "smtp") return PortKind::smtp;
    if (kind == "submission") return PortKind::submission;
    if (kind == "submissions") return PortKind::submissions;
    return make_error(fmt::format("unexpected inherited socket {} (want smtp.N, submission.N or submissions.N)", name));
}

std::string_view port_kind_name(PortKind kind) {
    switch (kind) {
        case PortKind::smtp: return "smtp";
        case PortKind::submission: return "submission";
        case PortKind::submissions: return "submissions";
    }
    return "smtp";
}

Result<Settings> load_settings(const config::Config& config, std::string_view service) {
    if (service != "smtpd" && service != "submission")
        return make_error(fmt::format("unknown service {} (smtpd or submission)", service));
    Settings s;
    s.service = std::string(service);
    bool hostname_from_system = config.string("myhostname").empty();
    auto hostname = daemon::host_name(config);
    if (!hostname) return make_error(hostname.error());
    s.myhostname = *hostname;
    s.banner = config.string(service, "banner");
    // The default banner is "$myhostname ESMTP facteur"; with myhostname
    // left empty the expansion lost the name, so put the real one back.
    if (hostname_from_system && !config.is_set(service, "banner")) s.banner = s.myhostname + " ESMTP facteur";
    s.message_size_limit = config.size("", "message_size_limit");
    s.command_line_limit = static_cast<size_t>(config.size(service, "command_line_limit"));
    s.data_line_limit = static_cast<size_t>(config.size(service, "data_line_limit"));
    s.recipient_limit = static_cast<size_t>(config.integer(service, "recipient_limit"));
    s.error_limit = static_cast<size_t>(config.integer(service, "error_limit"));
    s.idle_timeout = config.duration(service, "idle_timeout");
    s.client_connection_limit = static_cast<size_t>(config.integer(service, "client_connection_limit"));
    s.session_limit = static_cast<size_t>(config.integer(service, "session_limit"));
    s.hop_count_limit = static_cast<size_t>(config.integer(service, "hop_count_limit"));
    s.enable_expn = config.boolean(service, "enable_expn");
    s.auth_requires_tls = config.boolean(service, "auth_requires_tls");
    auto networks = Networks::parse(config.list(service, "mynetworks"));
    if (!networks) return make_error(fmt::format("[{}] mynetworks: {}", service, networks.error()));
    s.mynetworks = std::move(networks).value();
    s.spool_dir = config.path("spool_dir");
    s.auth_lookup_socket = config.path("auth_lookup_socket");
    s.qmgr_socket = config.path("qmgr_socket");
    s.tls_cert_file = config.path("tls_cert_file");
    s.tls_key_file = config.path("tls_key_file");
    return s;
}

}  // namespace facteur::smtpd
