// sendmail(1), mailq(1), newaliases(1): one program told apart by its name.
// Wiring only: options, configuration, then the chosen mode.
#include <signal.h>
#include <sysexits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "libmail/config.hpp"
#include "libmail/daemon.hpp"
#include "libmail/log.hpp"
#include "libmail/paths.hpp"
#include "sendmail/admin_modes.hpp"
#include "sendmail/options.hpp"
#include "sendmail/submit.hpp"

int main(int argc, char** argv) {
    using namespace facteur;
    signal(SIGPIPE, SIG_IGN);
    std::vector<std::string> arguments(argv, argv + argc);
    if (arguments.empty()) arguments.emplace_back("sendmail");

    auto options = sendmail::parse_options(arguments);
    if (!options) {
        // The name as invoked, even though parsing failed.
        std::string program = arguments.front().substr(arguments.front().rfind('/') + 1);
        fmt::print(stderr, "{}: {}\n{}\n", program, options.error(), sendmail::usage(program));
        return EX_USAGE;
    }
    log::init(options->program, log::Target::stderr_stream, options->verbose > 0 ? log::Level::info : log::Level::warning);

    std::string config_file = options->config_file;
    if (config_file.empty()) {
        const char* from_environment = std::getenv(daemon::kConfigVariable);
        config_file = from_environment && *from_environment ? from_environment : paths::config_file;
    }
    auto config = config::Config::load(config_file);
    if (!config) {
        fmt::print(stderr, "{}: {}\n", options->program, config.error());
        return EX_CONFIG;
    }

    switch (options->mode) {
    case sendmail::Mode::print_queue:
        return sendmail::print_queue(*options, *config);
    case sendmail::Mode::flush_queue:
        return sendmail::flush_queue(*options, *config);
    case sendmail::Mode::new_aliases:
        return sendmail::new_aliases(*options, *config);
    case sendmail::Mode::deliver:
        break;
    }
    sendmail::Outcome outcome = sendmail::submit(*options, *config, sendmail::current_submitter(), STDIN_FILENO);
    if (outcome.exit_code != EX_OK) {
        fmt::print(stderr, "{}: {}\n", options->program, outcome.message);
        return outcome.exit_code;
    }
    if (options->verbose > 0) {
        fmt::print(stderr, "{}: queued as {}\n", options->program, outcome.queue_id);
        if (!outcome.message.empty()) fmt::print(stderr, "{}: {}\n", options->program, outcome.message);
    }
    return EX_OK;
}
