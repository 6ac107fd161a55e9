// Which way the CLI reaches the user database: through authd's admin socket
// when authd runs (only authd writes while it runs, DESIGN §3), else directly.
#pragma once

#include <memory>

#include "cli/context.hpp"
#include "libmail/config.hpp"
#include "libmail/directory.hpp"
#include "libmail/directory_admin.hpp"
#include "libmail/result.hpp"

namespace facteur::cli {

class AdminAccess {
public:
    static Result<AdminAccess> open(const config::Config& config);

    directory_admin::Admin& admin() { return *admin_; }
    bool is_remote() const { return database_ == nullptr; }

private:
    // Declared first so it is destroyed last: the local Admin refers to it.
    // Held by pointer so moving an AdminAccess keeps that reference valid.
    std::unique_ptr<directory::UserDatabase> database_;
    std::unique_ptr<directory_admin::Admin> admin_;
};

// Loads the configuration, opens the access, runs `body(admin)` and returns
// its exit code; a configuration or database problem is reported instead.
template <typename Body>
int with_admin(const Context& context, Body body) {
    auto config = context.load_config();
    if (!config) return fail(config.error());
    auto access = AdminAccess::open(*config);
    if (!access) return fail(access.error());
    return body(access->admin());
}

}  // namespace facteur::cli
