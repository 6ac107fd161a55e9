// Chooses authd's admin socket or the database file for admin commands.
#include "cli/admin_access.hpp"

#include <chrono>

#include "libmail/ipc.hpp"

namespace facteur::cli {

Result<AdminAccess> AdminAccess::open(const config::Config& config) {
    AdminAccess access;
    std::string socket_path = config.path("auth_admin_socket");
    // A socket that accepts a connection means authd is up and owns the
    // database; a missing or refusing socket means nobody writes it.
    if (auto probe = ipc::Client::connect(socket_path, std::chrono::seconds(2)); probe) {
        access.admin_ = directory_admin::remote(socket_path);
        return access;
    }
    auto database = directory_admin::open_local_database(config.path("auth_db"), config.string("auth_owner"));
    if (!database) return make_error(database.error());
    access.database_ = std::make_unique<directory::UserDatabase>(std::move(database).value());
    access.admin_ = directory_admin::local(*access.database_);
    return access;
}

}  // namespace facteur::cli
