// `facteur config show [-n]` and `facteur config check` (DESIGN §7).
#include <memory>

#include <fmt/format.h>

#include "cli/commands.hpp"

namespace facteur::cli {

void register_config_commands(CLI::App& app, Context& context) {
    auto only_changed = std::make_shared<bool>(false);
    CLI::App* config = app.add_subcommand("config", "Show or check facteur.conf");
    config->require_subcommand(1);

    CLI::App* show = config->add_subcommand("show", "Print every parameter with its effective value");
    show->add_flag("-n,--non-default", *only_changed, "Only the parameters the file sets");
    show->callback([&context, only_changed] {
        auto loaded = context.load_config();
        if (!loaded) {
            context.exit_code = fail(loaded.error());
            return;
        }
        fmt::print("{}", loaded->show(*only_changed));
    });

    CLI::App* check = config->add_subcommand("check", "Validate facteur.conf (unknown keys, bad values)");
    check->callback([&context] {
        auto loaded = context.load_config();
        if (!loaded) {
            context.exit_code = fail(loaded.error());
            return;
        }
        report(fmt::format("{}: ok", context.config_file()));
    });
}

}  // namespace facteur::cli
