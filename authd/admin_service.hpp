// authd's admin socket: the facteur CLI's changes to the user database while
// authd runs (the only writer, DESIGN §3), decoded by directory_admin::serve.
#pragma once

#include <sys/types.h>

#include "libmail/directory.hpp"
#include "libmail/ipc.hpp"

namespace facteur::authd {

class AdminService {
public:
    AdminService(directory::UserDatabase& database, uid_t self);
    // Only root and authd's own user may change the database.
    bool allow(const ipc::PeerCredentials& peer) const;
    // Runs on the loop thread: SQLite writes of one row are quick.
    ipc::Frame handle(const ipc::Frame& request, const ipc::PeerCredentials& peer);

private:
    directory::UserDatabase& database_;
    uid_t self_;
};

}  // namespace facteur::authd
