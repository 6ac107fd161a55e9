// What every daemon does at start: read "-c FILE", load facteur.conf, set up
// logging, and take the listening sockets master handed over (DESIGN §4).
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/config.hpp"
#include "libmail/result.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::daemon {

// master passes listening sockets at fixed descriptors 3, 4, ... and names
// them in the environment, like systemd's LISTEN_FDS/LISTEN_FDNAMES.
inline constexpr int kFirstInheritedFd = 3;
inline constexpr const char* kListenFdsVariable = "FACTEUR_LISTEN_FDS";
inline constexpr const char* kListenNamesVariable = "FACTEUR_LISTEN_NAMES";
inline constexpr const char* kConfigVariable = "FACTEUR_CONFIG";
inline constexpr const char* kServiceVariable = "FACTEUR_SERVICE";

class InheritedSockets {
public:
    // Reads the variables, validates the descriptors (each must be an open
    // socket) and unsets the variables so they do not leak to grandchildren.
    static Result<InheritedSockets> take_from_environment();
    // For tests: adopt descriptors by name.
    void add(std::string name, UniqueFd fd) { sockets_[std::move(name)] = std::move(fd); }
    // The socket master created for `name`; an error names what is missing.
    Result<UniqueFd> take(std::string_view name);
    std::vector<std::string> names() const;

private:
    std::map<std::string, UniqueFd, std::less<>> sockets_;
};

struct Startup {
    config::Config config;
    std::string service;  // the section name master started us for
    InheritedSockets sockets;
};

// Parses the standard options (-c FILE, -h), loads the configuration
// (FACTEUR_CONFIG or the compiled-in path when -c is absent), initialises
// logging as `ident`, and takes the inherited sockets. A process that cannot
// go on (bad config, missing sockets) prints one line and exits 1 (CONVENTIONS).
Startup start(std::string_view ident, int argc, char** argv);

// This host's name for greetings, Received headers, Message-IDs and
// reports: myhostname, or the system's host name when that is empty. An
// error when the result is not a valid domain name (set myhostname then).
Result<std::string> host_name(const config::Config& config);

// Who may call a daemon that serves qmgr (deliverd, relayd): root, the
// daemon's own user, and mail_owner (qmgr's user).
std::set<uid_t> qmgr_peers(const config::Config& config);

// SIGHUP: re-reads the file `config` came from. On success replaces
// `config` and returns true; otherwise logs why and keeps it (false). The
// caller applies the new settings, then logs that the reload is done.
bool reload(config::Config& config);

// log_target/log_level from the configuration; exits on bad values.
void init_logging(std::string_view ident, const config::Config& config);

}  // namespace facteur::daemon
