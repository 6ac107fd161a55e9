// authd's lookup socket: password checks, user lookups and recipient
// resolution for the other daemons (protocol: libmail/auth_lookup.hpp).
#pragma once

#include <sys/types.h>

#include <set>
#include <string>

#include "authd/password_checker.hpp"
#include "libmail/directory.hpp"
#include "libmail/ipc.hpp"

namespace facteur::authd {

class LookupService {
public:
    // `allowed`: uids that may use the socket at all (root, authd itself,
    // mail_owner, vmail_owner). `privileged`: uids that also get users'
    // APOP secrets (root and authd itself; pop3d verifies APOP through the
    // `apop` op instead and never needs them).
    LookupService(directory::UserDatabase& database, PasswordChecker& checker, std::string mail_dir,
                  std::set<uid_t> allowed, std::set<uid_t> privileged);

    // The ipc::Server peer check: refused peers are logged.
    bool allow(const ipc::PeerCredentials& peer) const;
    void handle(const ipc::Frame& request, const ipc::PeerCredentials& peer, ipc::Server::Responder respond);

private:
    void verify(const ipc::Frame& request, ipc::Server::Responder respond);
    void apop(const ipc::Frame& request, ipc::Server::Responder respond);
    ipc::Frame find_user(const ipc::Frame& request, bool privileged);
    ipc::Frame resolve(const ipc::Frame& request, bool privileged);

    directory::UserDatabase& database_;
    PasswordChecker& checker_;
    std::string mail_dir_;
    std::set<uid_t> allowed_, privileged_;
};

}  // namespace facteur::authd
