// Preparing an instance before any daemon starts: directories with their
// owners and modes, the pid-file lock that keeps one master per instance.
#pragma once

#include <string>

#include "libmail/config.hpp"
#include "libmail/result.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::master {

// Creates runtime_dir, data_dir, spool_dir, mail_dir and the user database's
// directory; as root, gives each to its owner (DESIGN §1: the database
// directory only to auth_owner, mode 0700).
Status prepare_directories(const config::Config& config);

// Locks runtime_dir/master.pid and writes our pid into it. The lock lives as
// long as the returned descriptor; a second master on the instance fails.
Result<UniqueFd> lock_pid_file(const config::Config& config);

// Checks tls_cert_file/tls_key_file load, so a bad certificate stops master
// at start with one clear line instead of failing every TLS client later.
Status check_tls(const config::Config& config);

}  // namespace facteur::master
