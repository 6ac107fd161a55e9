// The service table: one entry per daemon facteur ships.
#include "master/services.hpp"

#include <charconv>

#include <fmt/format.h>

#include "libmail/ascii.hpp"
#include "libmail/relay_protocol.hpp"

namespace facteur::master {
namespace {

// TCP listeners named "<kind>.<n>" for every address of a list key.
Result<std::vector<ListenerSpec>> tcp_listeners(const config::Config& config, std::string_view section,
                                                std::string_view key, std::string_view kind) {
    std::vector<ListenerSpec> listeners;
    for (const std::string& entry : config.list(section, key)) {
        auto address = parse_listen_address(entry);
        if (!address) return make_error(fmt::format("[{}] {}: {}", section, key, address.error()));
        ListenerSpec spec;
        spec.name = fmt::format("{}.{}", kind, listeners.size());
        spec.kind = ListenerSpec::Kind::tcp;
        spec.address = address->first;
        spec.port = address->second;
        listeners.push_back(std::move(spec));
    }
    return listeners;
}

bool tls_configured(const config::Config& config) {
    return !config.path("tls_cert_file").empty() && !config.path("tls_key_file").empty();
}

Result<std::vector<ServiceSpec>> build_table(const config::Config& config) {
    std::vector<ServiceSpec> services;

    ServiceSpec authd;
    authd.name = "authd";
    authd.program = "authd";
    authd.owner_parameter = "auth_owner";
    authd.enabled = config.boolean("authd", "enabled");
    authd.processes = static_cast<int>(config.integer("authd", "processes"));
    // Lookup and SASL sockets are open to every local user: authd checks
    // SO_PEERCRED itself. The admin socket is for root (or the instance owner).
    authd.listeners = {
        {"sasl", ListenerSpec::Kind::unix_stream, config.path("auth_sasl_socket"), 0,
         static_cast<mode_t>(config.mode("", "auth_sasl_socket_mode"))},
        {"lookup", ListenerSpec::Kind::unix_stream, config.path("auth_lookup_socket"), 0, 0666},
        {"admin", ListenerSpec::Kind::unix_stream, config.path("auth_admin_socket"), 0, 0600},
    };
    services.push_back(std::move(authd));

    // deliverd and qmgr check their peers with SO_PEERCRED themselves.
    ServiceSpec deliverd;
    deliverd.name = "deliverd";
    deliverd.program = "deliverd";
    deliverd.owner_parameter = "vmail_owner";
    deliverd.enabled = config.boolean("deliverd", "enabled");
    deliverd.processes = static_cast<int>(config.integer("deliverd", "processes"));
    deliverd.listeners = {{"deliver", ListenerSpec::Kind::unix_stream, config.path("deliverd_socket"), 0, 0666}};
    services.push_back(std::move(deliverd));

    ServiceSpec qmgr;
    qmgr.name = "qmgr";
    qmgr.program = "qmgr";
    qmgr.owner_parameter = "mail_owner";
    qmgr.enabled = config.boolean("qmgr", "enabled");
    qmgr.processes = 1;  // one scheduler per spool
    qmgr.listeners = {{"qmgr", ListenerSpec::Kind::unix_stream, config.path("qmgr_socket"), 0, 0666}};
    services.push_back(std::move(qmgr));

    ServiceSpec smtpd;
    smtpd.name = "smtpd";
    smtpd.program = "smtpd";
    smtpd.owner_parameter = "mail_owner";
    smtpd.enabled = config.boolean("smtpd", "enabled");
    smtpd.processes = static_cast<int>(config.integer("smtpd", "processes"));
    auto smtp = tcp_listeners(config, "smtpd", "listen", "smtp");
    if (!smtp) return make_error(smtp.error());
    smtpd.listeners = std::move(*smtp);
    if (smtpd.listeners.empty()) smtpd.enabled = false;
    services.push_back(std::move(smtpd));

    // Submission needs TLS (AUTH only over TLS, RFC 8314): without a
    // certificate the service stays off instead of crash-looping.
    ServiceSpec submission;
    submission.name = "submission";
    submission.program = "smtpd";
    submission.owner_parameter = "mail_owner";
    submission.enabled = config.boolean("submission", "enabled") && tls_configured(config);
    submission.processes = static_cast<int>(config.integer("submission", "processes"));
    auto starttls = tcp_listeners(config, "submission", "listen", "submission");
    if (!starttls) return make_error(starttls.error());
    auto implicit = tcp_listeners(config, "submission", "listen_tls", "submissions");
    if (!implicit) return make_error(implicit.error());
    submission.listeners = std::move(*starttls);
    submission.listeners.insert(submission.listeners.end(), implicit->begin(), implicit->end());
    if (submission.listeners.empty()) submission.enabled = false;
    services.push_back(std::move(submission));

    // pop3d: 110 (STLS when TLS is configured) and 995 only with TLS.
    ServiceSpec pop3d;
    pop3d.name = "pop3d";
    pop3d.program = "pop3d";
    pop3d.owner_parameter = "vmail_owner";
    pop3d.enabled = config.boolean("pop3d", "enabled");
    pop3d.processes = static_cast<int>(config.integer("pop3d", "processes"));
    auto pop3 = tcp_listeners(config, "pop3d", "listen", "pop3");
    if (!pop3) return make_error(pop3.error());
    pop3d.listeners = std::move(*pop3);
    if (tls_configured(config)) {
        auto pop3s = tcp_listeners(config, "pop3d", "listen_tls", "pop3s");
        if (!pop3s) return make_error(pop3s.error());
        pop3d.listeners.insert(pop3d.listeners.end(), pop3s->begin(), pop3s->end());
    }
    if (pop3d.listeners.empty()) pop3d.enabled = false;
    services.push_back(std::move(pop3d));

    // relayd: qmgr's unix socket only (it connects out, never listens on
    // the network). The relay host credentials file is opened by master,
    // as root, and given to relayd as its standard input.
    ServiceSpec relayd;
    relayd.name = "relayd";
    relayd.program = "relayd";
    relayd.owner_parameter = "mail_owner";
    relayd.enabled = config.boolean("relayd", "enabled");
    relayd.processes = static_cast<int>(config.integer("relayd", "processes"));
    relayd.listeners = {{"relay", ListenerSpec::Kind::unix_stream, config.path("relayd_socket"), 0, 0666}};
    relayd.stdin_file = config.path("relayd", "relayhost_credentials");
    services.push_back(std::move(relayd));

    return services;
}

}  // namespace

Result<std::pair<std::string, uint16_t>> parse_listen_address(std::string_view text) {
    std::string_view host, port;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return make_error(fmt::format("bad address {}: expected [ipv6]:port", text));
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return make_error(fmt::format("bad address {}: write IPv6 addresses as [address]:port", text));
    } else {
        port = text;
    }
    unsigned value = 0;
    auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
        return make_error(fmt::format("bad port in {}", text));
    return std::pair<std::string, uint16_t>{std::string(host), static_cast<uint16_t>(value)};
}

Status check_services(const config::Config& config) {
    auto table = build_table(config);
    if (!table) return make_error(table.error());
    // Mistakes that would otherwise only show when mail goes out.
    if (std::string relayhost = config.string("relayhost"); !relayhost.empty()) {
        if (auto hop = relay::parse_nexthop(relayhost); !hop) return make_error("relayhost: " + hop.error());
    }
    std::string level = ascii::lowercase(config.string("relayd", "tls_security_level"));
    if (level != "none" && level != "may" && level != "encrypt" && level != "verify")
        return make_error(fmt::format("[relayd] tls_security_level = {}: expected none, may, encrypt or verify",
                                      config.string("relayd", "tls_security_level")));
    return {};
}

std::string ListenerSpec::describe() const {
    if (kind == Kind::unix_stream) return fmt::format("unix:{}", address);
    if (address.find(':') != std::string::npos) return fmt::format("[{}]:{}", address, port);
    return fmt::format("{}:{}", address, port);
}

std::vector<ServiceSpec> service_table(const config::Config& config) {
    auto table = build_table(config);
    // check_services ran on this configuration before it was accepted.
    if (!table) panic("service table: " + table.error());
    return std::move(*table);
}

}  // namespace facteur::master
