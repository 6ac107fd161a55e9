// sendmail(1) command lines, as Postfix's sendmail reads them.
#include <catch2/catch.hpp>

#include "sendmail/options.hpp"

using namespace facteur;
using namespace facteur::sendmail;

namespace {

Result<Options> parse(std::vector<std::string> argv) { return parse_options(argv); }

}  // namespace

TEST_CASE("the program name chooses the mode", "[sendmail][options]") {
    auto [argv0, mode, program] = GENERATE(table<std::string, Mode, std::string>({
        {"sendmail", Mode::deliver, "sendmail"},
        {"/usr/sbin/sendmail", Mode::deliver, "sendmail"},
        {"/usr/lib/sendmail", Mode::deliver, "sendmail"},
        {"mailq", Mode::print_queue, "mailq"},
        {"/usr/bin/mailq", Mode::print_queue, "mailq"},
        {"newaliases", Mode::new_aliases, "newaliases"},
        {"/tmp/x/newaliases", Mode::new_aliases, "newaliases"},
        {"something-else", Mode::deliver, "something-else"},
    }));
    auto options = parse({argv0});
    REQUIRE(options);
    CHECK(options->mode == mode);
    CHECK(options->program == program);
}

TEST_CASE("flags and values, clustered or apart", "[sendmail][options]") {
    SECTION("-t -i") {
        auto options = parse({"sendmail", "-t", "-i"});
        REQUIRE(options);
        CHECK(options->extract_recipients);
        CHECK(options->ignore_dots);
        CHECK(options->recipients.empty());
    }
    SECTION("-ti clustered") {
        auto options = parse({"sendmail", "-ti"});
        REQUIRE(options);
        CHECK(options->extract_recipients);
        CHECK(options->ignore_dots);
    }
    SECTION("-oi is -i; other -o options are ignored") {
        auto options = parse({"sendmail", "-oi", "-om", "-oem", "bob"});
        REQUIRE(options);
        CHECK(options->ignore_dots);
        CHECK(options->recipients == std::vector<std::string>{"bob"});
        auto separate = parse({"sendmail", "-o", "i", "bob"});
        REQUIRE(separate);
        CHECK(separate->ignore_dots);
        auto without = parse({"sendmail", "bob"});
        REQUIRE(without);
        CHECK_FALSE(without->ignore_dots);
    }
    SECTION("-f attached and separate, -r the same") {
        auto attached = parse({"sendmail", "-falice@example.org", "bob"});
        REQUIRE(attached);
        CHECK(attached->sender == "alice@example.org");
        auto separate = parse({"sendmail", "-f", "alice@example.org", "bob"});
        REQUIRE(separate);
        CHECK(separate->sender == "alice@example.org");
        auto r = parse({"sendmail", "-r", "<>", "bob"});
        REQUIRE(r);
        CHECK(r->sender == "<>");
        auto empty = parse({"sendmail", "-f", "", "bob"});
        REQUIRE(empty);
        CHECK(empty->sender == "");
        auto absent = parse({"sendmail", "bob"});
        REQUIRE(absent);
        CHECK_FALSE(absent->sender);
    }
    SECTION("-F full name") {
        auto options = parse({"sendmail", "-F", "Alice Liddell", "-t"});
        REQUIRE(options);
        CHECK(options->full_name == "Alice Liddell");
        CHECK(options->extract_recipients);
    }
    SECTION("-C config and -v") {
        auto options = parse({"sendmail", "-C", "/tmp/f.conf", "-vv", "bob"});
        REQUIRE(options);
        CHECK(options->config_file == "/tmp/f.conf");
        CHECK(options->verbose == 2);
    }
    SECTION("DSN options go to the envelope") {
        auto options = parse({"sendmail", "-N", "success,delay", "-R", "hdrs", "-V", "env-42", "-B", "8BITMIME", "bob"});
        REQUIRE(options);
        CHECK(options->notify == (queue::notify_success | queue::notify_delay));
        CHECK(options->ret == queue::Ret::headers);
        CHECK(options->envid == "env-42");
        REQUIRE(options->body);
        CHECK(*options->body == queue::BodyType::eight_bit_mime);
        auto never = parse({"sendmail", "-Nnever", "-Rfull", "-B7bit", "bob"});
        REQUIRE(never);
        CHECK(never->notify == queue::notify_never);
        CHECK(never->ret == queue::Ret::full);
        CHECK(*never->body == queue::BodyType::seven_bit);
    }
    SECTION("-- ends the options") {
        auto options = parse({"sendmail", "-t", "--", "-bob@example.org"});
        REQUIRE(options);
        CHECK(options->recipients == std::vector<std::string>{"-bob@example.org"});
    }
    SECTION("options stop at the first recipient") {
        auto options = parse({"sendmail", "bob", "-t"});
        REQUIRE(options);
        CHECK_FALSE(options->extract_recipients);
        CHECK(options->recipients == std::vector<std::string>{"bob", "-t"});
    }
    SECTION("ignored compatibility options") {
        auto options = parse({"sendmail", "-odb", "-Ooption=x", "-h", "10", "-L", "label", "-X", "/tmp/log", "-n",
                              "-m", "-G", "-U", "-x", "-c", "-p", "smtp:host", "bob"});
        REQUIRE(options);
        CHECK(options->recipients == std::vector<std::string>{"bob"});
        CHECK(options->mode == Mode::deliver);
    }
}

TEST_CASE("modes from -b, -q and -I", "[sendmail][options]") {
    auto [argv, mode] = GENERATE(table<std::vector<std::string>, Mode>({
        {{"sendmail", "-bm", "bob"}, Mode::deliver},
        {{"sendmail", "-bp"}, Mode::print_queue},
        {{"sendmail", "-b", "p"}, Mode::print_queue},
        {{"sendmail", "-bi"}, Mode::new_aliases},
        {{"sendmail", "-I"}, Mode::new_aliases},
        {{"sendmail", "-q"}, Mode::flush_queue},
        {{"sendmail", "-q30m"}, Mode::flush_queue},
        {{"mailq", "-v"}, Mode::print_queue},
        {{"newaliases"}, Mode::new_aliases},
        {{"mailq", "-bm", "bob"}, Mode::deliver},
    }));
    auto options = parse(argv);
    REQUIRE(options);
    CHECK(options->mode == mode);
}

TEST_CASE("usage errors say what is wrong", "[sendmail][options]") {
    auto [argv, fragment] = GENERATE(table<std::vector<std::string>, std::string>({
        {{"sendmail", "-k"}, "unknown option -k"},
        {{"sendmail", "-tk"}, "unknown option -k"},
        {{"sendmail", "-f"}, "option -f needs a value"},
        {{"sendmail", "-t", "-C"}, "option -C needs a value"},
        {{"sendmail", "-bs"}, "-bs is not supported"},
        {{"sendmail", "-bd"}, "-bd is not supported"},
        {{"sendmail", "-bx"}, "unknown mode"},
        {{"sendmail", "-qRexample.org"}, "-qR is not supported"},
        {{"sendmail", "-qSexample.org"}, "-qS is not supported"},
        {{"sendmail", "-N", "sometimes", "bob"}, "-N"},
        {{"sendmail", "-N", "", "bob"}, "-N"},
        {{"sendmail", "-R", "body", "bob"}, "-R"},
        {{"sendmail", "-B", "BINARY", "bob"}, "-B"},
        {{"sendmail", "-V", std::string(101, 'x'), "bob"}, "-V"},
        {{"sendmail", "-V", "tab\there", "bob"}, "-V"},
        {{"sendmail", "-f", "a@b\r\nRCPT TO:<x@y>", "bob"}, "line break"},
        {{"sendmail", "-F", "Eve\nBcc: victim@example.org", "bob"}, "line break"},
        {{"sendmail", "-f", std::string(300, 'a') + "@b", "bob"}, "longer than"},
        {{"sendmail", "-C", "", "bob"}, "-C"},
    }));
    auto options = parse(argv);
    REQUIRE_FALSE(options);
    INFO(options.error());
    CHECK(options.error().find(fragment) != std::string::npos);
}

TEST_CASE("NOTIFY lists", "[sendmail][options]") {
    CHECK(*parse_notify("NEVER") == queue::notify_never);
    CHECK(*parse_notify("failure") == queue::notify_failure);
    CHECK(*parse_notify("Success,Failure,Delay") ==
          (queue::notify_success | queue::notify_failure | queue::notify_delay));
    CHECK_FALSE(parse_notify("never,success"));
    CHECK_FALSE(parse_notify("success,,"));
}

TEST_CASE("usage names the program", "[sendmail][options]") {
    CHECK(usage("mailq").rfind("usage: mailq", 0) == 0);
    CHECK(usage("newaliases").rfind("usage: newaliases", 0) == 0);
    CHECK(usage("sendmail").find("-bp") != std::string::npos);
}
