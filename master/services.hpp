// The services master supervises: which program, as which user, with which
// listening sockets, all derived from facteur.conf.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <string_view>
#include <utility>

#include "libmail/config.hpp"
#include "libmail/result.hpp"

namespace facteur::master {

struct ListenerSpec {
    enum class Kind { unix_stream, tcp };
    std::string name;  // the name the daemon asks InheritedSockets for
    Kind kind = Kind::unix_stream;
    std::string address;  // socket path, or host for tcp
    uint16_t port = 0;
    mode_t mode = 0600;  // unix sockets only

    bool operator==(const ListenerSpec&) const = default;
    std::string describe() const;
};

struct ServiceSpec {
    std::string name;     // also the config section
    std::string program;  // file name under daemon_directory
    std::string owner_parameter;  // mail_owner, vmail_owner or auth_owner
    bool enabled = true;
    int processes = 1;
    std::vector<ListenerSpec> listeners;
    // A file master opens (as root) at each start and gives the process as
    // its standard input, e.g. relayd's relay host credentials; empty: none
    // (standard input is /dev/null).
    std::string stdin_file;
};

// Every service facteur has, in start order (authd first: the others ask
// it; stop runs in reverse).
// check_services() must have accepted `config` first.
std::vector<ServiceSpec> service_table(const config::Config& config);

// Whether the services can be built from `config` (listen addresses parse).
Status check_services(const config::Config& config);

// "host:port", "[ipv6]:port" or "port" (every IPv4 address).
Result<std::pair<std::string, uint16_t>> parse_listen_address(std::string_view text);

}  // namespace facteur::master
