// The service table: one entry per daemon facteur ships.
#include "master/services.hpp"

#include <fmt/format.h>

namespace facteur::master {

std::string ListenerSpec::describe() const {
    if (kind == Kind::unix_stream) return fmt::format("unix:{}", address);
    if (address.find(':') != std::string::npos) return fmt::format("[{}]:{}", address, port);
    return fmt::format("{}:{}", address, port);
}

std::vector<ServiceSpec> service_table(const config::Config& config) {
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

    return services;
}

}  // namespace facteur::master
