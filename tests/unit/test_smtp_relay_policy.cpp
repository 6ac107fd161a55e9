// Unit tests for smtpd/relay_policy: mynetworks parsing and matching for
// IPv4 and IPv6, refusal of 0-length prefixes (open relay), every disguised
// relay form (DESIGN §5).
#include <catch2/catch.hpp>

#include <string>

#include "libmail/address.hpp"
#include "smtpd/relay_policy.hpp"

using namespace facteur;
using namespace facteur::smtpd;

TEST_CASE("mynetworks: parsing") {
    auto [text, shown] = GENERATE(table<std::string, std::string>({
        {"127.0.0.0/8", "127.0.0.0/8"},
        {"192.0.2.7", "192.0.2.7/32"},
        {"192.0.2.77/24", "192.0.2.0/24"},
        {"::1/128", "::1/128"},
        {"::1", "::1/128"},
        {"[2001:db8::]/32", "2001:db8::/32"},
        {"[2001:db8::1]", "2001:db8::1/128"},
        {"2001:db8:ffff::/33", "2001:db8:8000::/33"},
    }));
    INFO(text);
    auto network = parse_network(text);
    REQUIRE(network.ok());
    CHECK(network->to_string() == shown);
}

TEST_CASE("mynetworks: bad entries and open relays are refused") {
    auto text = GENERATE(as<std::string>{}, "0.0.0.0/0", "::/0", "[::]/0", "10.0.0.0/0", "1.2.3.4/33", "::1/129",
                         "1.2.3/24", "example.test", "", "1.2.3.4/", "[1.2.3.4]", "[::1", "1.2.3.4/-1", "1.2.3.4/8x");
    INFO(text);
    CHECK_FALSE(parse_network(text).ok());
}

TEST_CASE("mynetworks: an open relay entry names itself in the error") {
    auto networks = Networks::parse({"127.0.0.0/8", "0.0.0.0/0"});
    REQUIRE_FALSE(networks.ok());
    CHECK(networks.error().find("relay for everyone") != std::string::npos);
}

TEST_CASE("mynetworks: matching") {
    auto networks = Networks::parse({"127.0.0.0/8", "192.0.2.128/25", "2001:db8::/32", "::1"});
    REQUIRE(networks.ok());
    auto [address, inside] = GENERATE(table<std::string, bool>({
        {"127.0.0.1", true},
        {"127.255.255.255", true},
        {"128.0.0.1", false},
        {"192.0.2.128", true},
        {"192.0.2.255", true},
        {"192.0.2.127", false},
        {"2001:db8::1", true},
        {"2001:db8:ffff:ffff::1", true},
        {"2001:db9::1", false},
        {"::1", true},
        {"::2", false},
        {"::ffff:127.0.0.1", false},  // the connection reports mapped addresses as IPv4
        {"unix", false},
        {"", false},
        {"not an address", false},
    }));
    INFO(address);
    CHECK(networks->contains(address) == inside);
}

TEST_CASE("disguised relays: every routing form in the local part") {
    auto [path_text, disguised] = GENERATE(table<std::string, bool>({
        {"<bob@example.test>", false},
        {"<bob.smith+tag@example.test>", false},
        {"<user%other.test@example.test>", true},
        {"<\"user@other.test\"@example.test>", true},
        {"<\"user%other.test\"@example.test>", true},
        {"<other.test!user@example.test>", true},
        {"<\"other.test!user\"@example.test>", true},
        {"<@hop.test:bob@example.test>", false},  // source route dropped, final mailbox judged
        {"<@hop.test,@hop2.test:user%other.test@example.test>", true},
    }));
    INFO(path_text);
    address::PathOptions options;
    auto path = address::parse_path(path_text, options);
    REQUIRE(path.ok());
    CHECK(is_disguised_relay(*path) == disguised);
}

TEST_CASE("recipient verdicts") {
    auto [kind, disguised, may_relay, verdict] = GENERATE(table<RecipientClass, bool, bool, RelayVerdict>({
        {RecipientClass::local, false, false, RelayVerdict::accept},
        {RecipientClass::local, false, true, RelayVerdict::accept},
        {RecipientClass::local, true, true, RelayVerdict::disguised_relay},
        {RecipientClass::unknown_local, false, false, RelayVerdict::unknown_user},
        {RecipientClass::unknown_local, true, false, RelayVerdict::disguised_relay},
        {RecipientClass::unknown_local, true, true, RelayVerdict::disguised_relay},
        {RecipientClass::remote, false, false, RelayVerdict::relay_denied},
        {RecipientClass::remote, true, false, RelayVerdict::relay_denied},
        {RecipientClass::remote, false, true, RelayVerdict::accept},
        {RecipientClass::remote, true, true, RelayVerdict::accept},
    }));
    CHECK(judge_recipient(kind, disguised, may_relay) == verdict);
}
