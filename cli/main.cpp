// facteur(8), the admin command: wiring only. Each command group lives in
// its own cmd_*.cpp; this file parses the options and returns the exit code.
#include <signal.h>

#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/context.hpp"
#include "libmail/log.hpp"
#include "libmail/paths.hpp"

int main(int argc, char** argv) {
    using namespace facteur;
    // Library code logs through facteur::log; an admin command only needs
    // its warnings, on the terminal.
    log::init("facteur", log::Target::stderr_stream, log::Level::warning);
    signal(SIGPIPE, SIG_IGN);

    cli::Context context;
    CLI::App app{"facteur: administer a facteur mail system (see facteur(8))", "facteur"};
    app.set_version_flag("-V,--version", fmt::format("facteur {}", paths::version));
    app.add_option("-c,--config", context.config_option,
                   fmt::format("Configuration file (default: $FACTEUR_CONFIG, else {})", paths::config_file))
        ->type_name("FILE");
    app.require_subcommand(1);
    app.fallthrough();  // -c is accepted after the subcommand too

    cli::register_service_commands(app, context);
    cli::register_domain_commands(app, context);
    cli::register_user_commands(app, context);
    cli::register_alias_commands(app, context);
    cli::register_config_commands(app, context);
    cli::register_queue_commands(app, context);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return cli::kExitUsage;
    }
    return context.exit_code;
}
