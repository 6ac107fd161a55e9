// Operating-system helpers several daemons need: accounts and privilege
// dropping, directories with owners and modes, durable writes.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "libmail/result.hpp"

namespace facteur::system {

struct Account {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
};

Result<Account> find_account(std::string_view name);
// The account this process runs as.
Account current_account();
bool running_as_root();

// setgroups/setgid/setuid to `account`, then checks root cannot be regained.
Status drop_privileges(const Account& account);

// mkdir -p `path`; the last component gets `mode`, and, when we are root and
// an owner is given, that owner. Existing directories are fixed up likewise.
Status ensure_directory(const std::string& path, mode_t mode, std::optional<Account> owner = std::nullopt);

// fsync a directory so a rename or unlink inside it is durable (DESIGN §3).
Status fsync_directory(const std::string& path);

// write(2) until all of `data` is written (EINTR retried); 0 or the errno.
int write_all(int fd, std::string_view data);

// Writes `content` to `path` via a temporary file, fsync and rename.
Status write_file_atomically(const std::string& path, std::string_view content, mode_t mode);

// The whole content of an open file (read until end of file), or an error
// naming `name` when reading fails or it is larger than `limit` bytes.
Result<std::string> read_all(int fd, size_t limit, std::string_view name);
// Opens `path` read-only and reads it whole, bounded by `limit`.
Result<std::string> read_file(const std::string& path, size_t limit);

std::string parent_directory(std::string_view path);
std::string errno_text(int error);

}  // namespace facteur::system
