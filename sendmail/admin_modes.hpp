// sendmail's other faces: mailq (-bp) and sendmail -q ask qmgr over
// qmgr_socket; newaliases (-bi) checks the aliases file. Each prints its
// result and returns a sysexits(3) code.
#pragma once

#include "libmail/config.hpp"
#include "sendmail/options.hpp"

namespace facteur::sendmail {

// The `facteur queue list` text, from qmgr; EX_UNAVAILABLE when qmgr is down.
int print_queue(const Options& options, const config::Config& config);
// Asks qmgr to retry every deferred message now (root and mail_owner only).
int flush_queue(const Options& options, const config::Config& config);
// Validates alias_file with directory::parse_aliases_file. authd has no
// reload operation of its own: it reads the file at start and on reload
// (`facteur reload`), which the message says.
int new_aliases(const Options& options, const config::Config& config);

}  // namespace facteur::sendmail
