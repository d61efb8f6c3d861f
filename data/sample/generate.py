#!/usr/bin/env python3
"""Generate the synthetic customer-support demo dataset (texts.csv + labels.csv).

Stdlib only and fully deterministic: running it twice gives byte-identical files.
Usage:  python data/sample/generate.py
Every message is invented for this project (fictional shop "Lumo"); there are no real customers.
"""
import csv
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20261123
OUT_DIR = Path(__file__).resolve().parent
# Rows per intent (moderately imbalanced), duplicates included.
CLASS_SIZES = {"refund_request": 300, "delivery_status": 270, "login_problem": 240, "payment_failed": 200,
               "cancel_subscription": 180, "product_defect": 160, "change_address": 130, "account_deletion": 120}
DUPES_PER_CLASS = 2      # the same message sent twice (case/whitespace differ), same label
P_AMBIGUOUS = 0.03       # main request plus a mention of a second intent, labelled by the main request
P_VAGUE = 0.07           # follow-ups whose intent is only clear from the (unseen) conversation
P_TYPO = 0.15
SOURCES = [("email", 0.50), ("chat", 0.42), ("app_review", 0.08)]
ANNOTATORS = [("ann_a", 0.45), ("ann_b", 0.35), ("ann_c", 0.20)]

# ---- slot fillers (a slot keeps one value within a message) -------------------------------
PRODUCTS = ["Aurora wireless headphones", "Nimbus 2 coffee grinder", "Lumo desk lamp", "Terra yoga mat",
            "Pixel Pro phone case", "Kettle Mini", "Brisa fan", "café espresso cups set", "Orbit smartwatch",
            "Nordic wool blanket", "Vega bluetooth speaker", "Atlas backpack", "Sol air fryer"]
PLANS = ["Premium plan", "Plus annual plan", "Family plan", "monthly Basic plan", "Lumo+ membership"]
STREETS = ["14 Rue de la Paix", "Hauptstraße 5", "22 Baker Street", "Calle Mayor 8", "Via Roma 31",
           "Kastanienallee 12", "7 Quai Saint-Michel"]
NAMES = ["Zoë Martin", "José Álvarez", "Jürgen Weiß", "Amélie Dubois", "Siobhán Kelly", "Tom Becker",
         "Priya Nair", "Lars Øberg", "Ana Šimić", "Mark", "Julia", "Chloé"]
GADGETS = {"headphones", "grinder", "lamp", "Mini", "fan", "smartwatch", "speaker", "fryer"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]


def _amount(r):
    v = r.choice([9.99, 12.5, 19.99, 24.9, 39.9, 49.99, 59, 79.95, 129, 149.99, 249]) + r.choice([0, 0, 10, 20])
    return r.choice([f"€{v:.2f}", f"${v:.2f}", f"{v:.2f} €".replace(".", ","), f"{v:.2f} EUR", f"€{v:.0f}"])


def _date(r):
    m, d = r.randrange(10), r.randint(1, 28)
    return r.choice([f"{MONTHS[m]} {d}", f"{d} {MONTHS[m]}", f"2026-{m + 1:02d}-{d:02d}", f"{d:02d}/{m + 1:02d}",
                     "Monday", "Friday", "the 12th"])


FILL = {
    "order": lambda r: r.choice(["#", "#", "#", ""]) + r.choice("AABK") + str(r.randint(10000, 99999)),
    "amount": _amount, "date": _date, "product": lambda r: r.choice(PRODUCTS), "plan": lambda r: r.choice(PLANS),
    "carrier": lambda r: r.choice(["DHL", "UPS", "DPD", "GLS", "PostNL", "Colissimo"]),
    "city": lambda r: r.choice(["Berlin", "Köln", "Lyon", "Málaga", "Dublin", "Gdańsk", "Zürich", "Porto"]),
    "street": lambda r: r.choice(STREETS), "name": lambda r: r.choice(NAMES),
    "gadget": lambda r: r.choice([p for p in PRODUCTS if p.split()[-1] in GADGETS]),
    "wearable": lambda r: r.choice(["Aurora wireless headphones", "Orbit smartwatch", "Vega bluetooth speaker"]),
    "card": lambda r: r.choice(["my Visa ending in 4821", "my Mastercard", "my Amex", "my debit card"]),
    "device": lambda r: r.choice(["the iPhone app", "the Android app", "the website", "the iPad app"]),
    "n": lambda r: str(r.randint(3, 21)), "years": lambda r: str(r.randint(2, 9)), "zip": lambda r: str(r.randint(10000, 99999)),
    "email": lambda r: r.choice(["zoe.m", "jalvarez", "j.weiss", "amelie.d", "skelly88", "tbecker"]) + "@example.com",
}

# ---- templates per intent: core sentences (email/chat), short chat lines, app-store reviews ----
INTENTS = {
    "refund_request": dict(
        core=["I was charged twice for order {order} and I want my money back.",
              "My card was charged {amount} twice for the same order, please refund the duplicate payment.",
              "I returned the {product} on {date} but I still haven't received my refund.",
              "Can I get a refund for order {order}? I changed my mind and already sent it back.",
              "I cancelled my {plan} on {date} but you still took {amount}. Please refund it.",
              "The {product} arrived damaged and I would like a full refund, not a replacement.",
              "Please refund the {amount} delivery fee, the parcel arrived {n} days late.",
              "Your return portal says my refund was approved on {date}, but nothing has reached my account yet.",
              "I'd like to request a refund for {order}, the item is not what was described.",
              "You charged me {amount} after my free trial ended although I never used it. I want that money back.",
              "How long does a refund take? I sent back order {order} two weeks ago.",
              "I paid {amount} for express shipping and it came by standard post, refund the difference please.",
              "Order {order} was cancelled on your side but the payment of {amount} was never returned to {card}.",
              "Could you reverse the charge of {amount} from {date}? It was taken by mistake.",
              # implicit / borrowing other intents' vocabulary
              "{carrier} tracking shows you received my return on {date}. When does the money come back to {card}?",
              "The payment for order {order} went through twice at checkout. I only need one of them.",
              "My subscription renewed on {date} although I had already cancelled it. I expect that {amount} back."],
        short=["refund please", "where is my refund", "i want my money back", "charged twice, refund pls",
               "still no refund for {order}", "need a refund for {order}", "money back for the {product} pls",
               "when do i get my {amount} back", "return received, money still not back"],
        review=["Returned my stuff a month ago and still no refund. Avoid.", "Double charged and support takes forever to refund",
                "Good products but getting your money back is a nightmare.", "they took my money, no refund after return",
                "Waited 6 weeks for a refund, still waiting"]),
    "cancel_subscription": dict(
        core=["Please cancel my subscription but keep my account, I might come back later.",
              "I want to cancel my {plan} before the next billing date on {date}.",
              "How do I turn off auto-renewal? I don't want to be charged {amount} again next month.",
              "Please end my {plan} at the end of the current billing period.",
              "I'd like to stop my monthly subscription, I can't find the cancel button in the app.",
              "Cancel my subscription effective immediately, I no longer need the service.",
              "I'm moving abroad and won't need the {plan} anymore, please cancel it.",
              "I signed up for the free trial and want to cancel before it turns into a paid plan.",
              "The price went up to {amount} a month, so I want to unsubscribe from the {plan}.",
              "I tried to cancel on {date} but the page just reloads. Please cancel it for me and confirm by email.",
              "Stop charging {card} every month, I want to cancel the subscription.",
              "Please don't renew my annual plan, it renews on {date}.",
              "Can you downgrade me to the free tier? I don't want to pay for the {plan} any more.",
              "I don't want the {plan} after this month. Please make sure no more payments are taken from {card}.",
              "My account can stay, I just don't want to be billed for the {plan} any longer."],
        short=["cancel my subscription", "how do i cancel", "unsubscribe me pls", "stop my plan",
               "cancel {plan}", "turn off auto renew", "i want to cancel my membership", "end my subscription",
               "no more monthly payments please, cancel it"],
        review=["Impossible to cancel the subscription in the app, had to email them.", "Cancelling is hidden deep in settings, shady.",
                "want to cancel but no button anywhere", "Subscription trap. Took me 3 tries to unsubscribe"]),
    "delivery_status": dict(
        core=["Where is my order {order}? It was supposed to arrive on {date}.",
              "The tracking for {order} hasn't updated in {n} days.",
              "{carrier} says my parcel was delivered but there's nothing at my door.",
              "Can you tell me when order {order} will ship?",
              "I ordered the {product} on {date} and still haven't received a shipping confirmation.",
              "My package has been stuck at the {carrier} depot in {city} for a week.",
              "Your email said delivery in 2-3 days, it's been {n} days. What is going on with my order?",
              "Is my order {order} lost? The tracking link just gives an error.",
              "I paid {amount} for express delivery, when will it actually arrive?",
              "Half of my order arrived but the {product} is missing. Is it coming in a separate parcel?",
              "Could you check the status of my delivery? Order {order}, placed {date}.",
              "The courier left a note saying they'd try again, but nobody came. When is the next attempt?",
              "I paid {amount} for order {order} on {date} and haven't heard anything since.",
              "My {plan} box normally comes on the 1st and this month nothing has come."],
        short=["where is my package", "wheres my order {order}", "tracking not updating", "any news on my delivery?",
               "order {order} status?", "still waiting for my parcel", "when will my order arrive", "is {order} shipped yet"],
        review=["Delivery takes forever, order still not here after 3 weeks.", "Tracking in the app never updates",
                "ordered 2 weeks ago still nothing", "Shipping is so slow, my package is lost somewhere"]),
    "login_problem": dict(
        core=["I can't log in to my account, it says my password is wrong even after resetting it.",
              "The password reset email never arrives at {email}.",
              "My account got locked after too many login attempts.",
              "I'm not receiving the two-factor code by SMS, so I can't sign in.",
              "Since the last update of {device} I get logged out right after signing in.",
              "The login page just spins forever on {device}.",
              "I changed my email to {email} and now I can't sign in with either address.",
              "When I sign in with Google it says the account doesn't exist, but I have orders on it.",
              "I need to check order {order} but I can't get into my account.",
              'I want to update my card details but I\'m stuck at the login screen with an "invalid credentials" error.',
              "The reset link says it has expired every time I click it.",
              "My {plan} is active but I can't access my account to use it.",
              "The app says {email} is not registered, but I get your order confirmations at that address."],
        short=["cant log in", "can't sign in", "login not working", "password reset not working",
               "locked out of my account", "no 2fa code", "reset link broken", "cant get into my account"],
        review=["Keeps logging me out after the update.", "can't even log in anymore, useless app",
                "Login broken on {device} since update", "Stuck on the sign in screen every time"]),
    "payment_failed": dict(
        core=["My card keeps getting declined at checkout even though it has funds.",
              'I tried to pay {amount} for order {order} and got "payment failed", but my bank says everything is fine.',
              "The renewal payment for my {plan} failed, how can I retry it?",
              "PayPal payment doesn't go through, it just sends me back to the cart.",
              "{card} is rejected every time I try to place an order.",
              "Checkout shows an error after I enter the 3-D Secure code.",
              "I can't update my card for the subscription, the form says 'card not supported'.",
              "Your site says my payment was declined but {amount} is showing as pending on {card}.",
              "Apple Pay fails at the last step, I tried three times today.",
              "Got an email that my subscription payment failed on {date}. My card is valid until 2028.",
              "The voucher code applied fine but then the payment step errors out.",
              "Why does my payment keep failing? I've tried two different cards for order {order}.",
              "I want to keep my {plan} but it says my account is on hold because the last charge didn't work."],
        short=["card declined", "payment failed again", "cant pay", "checkout error when paying",
               "my card keeps getting declined", "payment not going through", "paypal not working at checkout"],
        review=["Payment keeps failing at checkout, lost my cart twice.", "card always declined in app but works everywhere else",
                "Can't pay with Apple Pay, just errors"]),
    "change_address": dict(
        core=["I need to change the delivery address for order {order}, I just moved to {street}, {city}.",
              "I made a typo in my shipping address, it should be {street}. Can you fix it before it ships?",
              "Please update my default address to {street}, {city}.",
              "Can I have order {order} sent to my work address instead?",
              "I'm moving on {date}, how do I change the address for my subscription deliveries?",
              "The address on my account is old, please change it to {street}, {city}.",
              "Can you redirect my parcel to {street}? I won't be home.",
              "Wrong postcode on order {order}, the correct one is {zip}.",
              "I want to change the billing address linked to {card}.",
              "The app won't let me edit my address, it says the field is locked.",
              "I won't be living in {city} after {date}, so the {plan} boxes need to go to {street} from then on."],
        short=["change my address pls", "need to update shipping address", "wrong address on order {order}",
               "new address: {street}, {city}", "can i change the delivery address", "update my address"],
        review=["No way to edit the address after ordering.", "changing address in app is impossible",
                "Moved house and the app still ships to my old address"]),
    "product_defect": dict(
        core=["The {gadget} stopped working after {n} days.",
              "My Orbit smartwatch arrived with a cracked screen. Can you send a replacement?",
              "The {gadget} makes a loud buzzing noise when it's on.",
              "Order {order} arrived but the {gadget} is missing the power cable.",
              "The battery on my {wearable} drains in an hour, it's clearly faulty.",
              "The {gadget} I got on {date} doesn't turn on at all. What are my warranty options?",
              "One of the parts in my order is broken, the box was fine so it was packed like that.",
              "The stitching on the Atlas backpack came apart after a week.",
              "The {gadget} overheats and smells like burning plastic.",
              "Got the Aurora wireless headphones, the left side doesn't work. Do I need to send it back for repair?",
              "This is the second {product} that came defective. Please exchange it.",
              "The {wearable} from order {order} won't pair with my phone at all, even after a reset."],
        short=["product broken", "item arrived damaged", "{gadget} doesnt work", "it stopped working",
               "arrived broken, need replacement", "faulty {gadget}"],
        review=["Product broke after a week, quality went down.", "headphones died after 10 days",
                "arrived scratched and broken", "Cheap quality, the lamp flickers constantly"]),
    "account_deletion": dict(
        core=["I want to delete my account and all my data.",
              "Please permanently close my account registered under {email}.",
              "Under GDPR I request the erasure of all personal data you hold about me.",
              "How do I delete my account? I already cancelled my subscription.",
              "Remove my account and stop emailing me, I don't want any of my data stored.",
              "I'd like my customer account closed and my saved cards removed.",
              "Please delete my profile, order history and addresses.",
              "I don't use your shop anymore, delete everything linked to {email}.",
              "Can you confirm in writing once my account and personal data have been deleted?",
              "I can't find an option to delete the account in the app, please do it for me.",
              "I'm done with Lumo. Remove me from your systems, I don't want you keeping my details."],
        short=["delete my account", "pls remove my account and data", "close my account permanently",
               "gdpr delete request", "how to delete account"],
        review=["No option to delete the account in the app??", "Want to delete my account but the app wont let me",
                "Had to email them just to get my data removed"]),
}
# Background mentions of a second intent (for the deliberately ambiguous messages).
MENTIONS = {
    "refund_request": ["and honestly I'd like my money back for last month too.", "I expect a refund for the trouble as well."],
    "cancel_subscription": ["I'm also thinking about cancelling my subscription.", "Otherwise I'll cancel my plan."],
    "delivery_status": ["My last order still hasn't arrived either.", "Also, where is my other parcel?"],
    "login_problem": ["I also couldn't log in this morning.", "The app keeps logging me out too."],
    "payment_failed": ["My card was declined the first time I tried to pay, too.", "The payment failed twice before it worked."],
    "change_address": ["Also, my address has changed since then.", "Please note I moved to {street}."],
    "product_defect": ["The last item I got from you was broken as well.", "And the {gadget} stopped working too."],
    "account_deletion": ["If this isn't fixed I'll just delete my account.", "After that I want my account deleted."],
}
# Follow-ups that only make sense with the earlier conversation; each lists the intents it was seen with.
VAGUE = [("Any update on {order}?", "refund_request delivery_status product_defect change_address"),
         ("I'm still waiting. Order {order}.", "refund_request delivery_status"),
         ("It still doesn't work, I tried again today.", "login_problem payment_failed product_defect"),
         ("Same error as yesterday.", "login_problem payment_failed"),
         ("Can someone call me back about my account?", "login_problem account_deletion cancel_subscription"),
         ("Please look into order {order}, something is wrong with it.", "delivery_status refund_request product_defect payment_failed"),
         ("I need help with my {plan}.", "cancel_subscription payment_failed login_problem"),
         ("I wrote to you on {date} and nobody replied.", " ".join(CLASS_SIZES)),
         ("Following up on my previous email about {order}.", "delivery_status refund_request change_address product_defect"),
         ("Something is wrong with the charge on {card}.", "refund_request payment_failed cancel_subscription"),
         ("Is this sorted now? It's about {email}.", "account_deletion login_problem cancel_subscription"),
         ("That didn't help, still the same problem with my account.", "login_problem payment_failed account_deletion"),
         ("Your colleague said it would be fixed by {date}. It isn't.", " ".join(CLASS_SIZES))]
# Extra context sentences: CONTEXT fits any message, ORDER_CONTEXT only the order-related intents.
CONTEXT = ["I've been a customer for {years} years.", "This is the second time I'm contacting you about this.",
           "I already tried the contact form but nobody answered.", "I'm using {device}.", "My account email is {email}.",
           "I paid with {card}.", "I'm on the {plan}.", "Sorry if this is the wrong place to ask.",
           "I checked the FAQ but found nothing.", "I called your hotline yesterday and was on hold for forty minutes.",
           "I have always been happy with Lumo and never had a problem like this before."]
ORDER_CONTEXT = ["My order number is {order}.", "I placed the order on {date}.", "The total was {amount}.",
                 "It's about the {product} I bought on {date}.", "It was meant as a birthday present, so this matters a lot."]
ORDER_INTENTS = {"refund_request", "delivery_status", "payment_failed", "change_address", "product_defect"}
OPEN_EMAIL = ["Hello,", "Hi,", "Dear Support Team,", "Good morning,", "Dear Sir or Madam,", "Hi there,", "Hello team,", ""]
CLOSE_EMAIL = ["Thanks in advance.", "Kind regards, {name}", "Best regards, {name}", "Thank you, {name}",
               "Looking forward to your reply.", "Cheers, {name}", "Many thanks!", ""]
OPEN_CHAT = ["hi ", "hey ", "hello, ", "quick question: ", "sorry to bother you but ", "", "", ""]
CLOSE_CHAT = [" thx", " thanks", " pls help", "??", " asap", "", "", ""]
STARS = ["1 star.", "★☆☆☆☆", "2/5", "1/5", "2 stars", "One star until fixed.", "⭐", "😡", "★★☆☆☆", ""]
REVIEW_OPEN = ["", "", "", "Update: ", "Used to love this app. ", "Meh. ", "Honestly... "]
ANGRY = ["This is unacceptable!", "I'm really frustrated.", "Third time asking!!", "Please sort this out today.",
         "Seriously, what is going on?", "Very disappointed.", "Not happy at all."]
PARAPHRASE = [(r"\bparcel\b", "package"), (r"\bpackage\b", "parcel"), (r"\bI want\b", "I'd like"),
              (r"\bcan't\b", "cannot"), (r"\bplease\b", "kindly"), (r"\bPlease\b", "Could you please"),
              (r"\bmy account\b", "my profile"), (r"\bI'd like\b", "I would like")]


def fill(r, template, memo):
    return re.sub(r"\{(\w+)\}", lambda m: memo.setdefault(m.group(1), FILL[m.group(1)](r)), template)


def weighted(r, pairs):
    return r.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def paraphrase(r, text):
    for pattern, repl in PARAPHRASE:
        if r.random() < 0.15 and "Please don't" not in text:
            text = re.sub(pattern, repl, text, count=1)
    return text


def add_typos(r, text):
    words = text.split(" ")
    for _ in range(r.randint(1, 3)):
        i = r.randrange(len(words))
        w, kind = words[i], r.random()
        if len(w) < 4 or not w.isalpha():
            continue
        j = r.randrange(1, len(w) - 1)
        if kind < 0.4:
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]          # swapped letters
        elif kind < 0.8:
            words[i] = w[:j] + w[j + 1:]                             # dropped letter
        else:
            words[i] = w[:j] + w[j] + w[j:]                          # doubled letter
    text = " ".join(words)
    text = text.replace("'", "") if r.random() < 0.6 else text      # missing apostrophes
    return text.lower() if r.random() < 0.4 else text


def compose(r, label, source, kind):
    spec, memo = INTENTS[label], {}
    other = r.choice([k for k in INTENTS if k != label])
    if kind == "vague":
        body = [fill(r, r.choice([t for t, labels in VAGUE if label in labels.split()]), memo)]
    elif source == "app_review":
        body = [r.choice(REVIEW_OPEN) + fill(r, r.choice(spec["review"]), memo)]
    elif source == "chat" and kind == "plain" and r.random() < 0.45:
        text = r.choice(OPEN_CHAT) + fill(r, r.choice(spec["short"]), memo) + r.choice(CLOSE_CHAT)
        return text.lower() if r.random() < 0.5 else text
    else:
        body = [paraphrase(r, fill(r, r.choice(spec["core"]), memo))]
    if kind == "ambiguous":
        body.insert(r.choice([0, 1, 1]), fill(r, r.choice(MENTIONS[other]), memo))
    if source == "app_review":
        return " ".join([b if b[-1] in ".!?" else b + "." for b in body] + [r.choice(STARS)]).strip()
    n_ctx = r.choices([0, 1, 2, 3, 4], weights=[2, 4, 3, 2, 1] if source == "email" else [6, 3, 1, 0, 0])[0]
    for ctx in r.sample(CONTEXT + (ORDER_CONTEXT if label in ORDER_INTENTS else []), n_ctx):
        body.insert(r.randint(0, len(body)), fill(r, ctx, memo))
    if r.random() < 0.15:
        body.append(r.choice(ANGRY))
    if source == "email":
        return " ".join(p for p in [r.choice(OPEN_EMAIL)] + body + [fill(r, r.choice(CLOSE_EMAIL), memo)] if p)
    close = r.choice(CLOSE_CHAT)
    text = r.choice(OPEN_CHAT) + " ".join(body).rstrip(".!" if close == "??" else "") + close
    return text.lower().rstrip(".") if r.random() < 0.35 else text


def vary_duplicate(r, text):
    """Same message sent again: identical, different case, or different whitespace."""
    return r.choice([text, text.lower(), text.upper() if len(text) < 40 else text.lower(),
                     "  " + text.replace(" ", "  ", 2), text + " ", text.replace(". ", ".  ")])


def main():
    r = random.Random(SEED)
    start, span = datetime(2026, 1, 1), int((datetime(2026, 11, 1) - datetime(2026, 1, 1)).total_seconds())
    rows, seen = [], set()
    for label, size in CLASS_SIZES.items():
        made = 0
        while made < size - DUPES_PER_CLASS:
            source, u = weighted(r, SOURCES), r.random()
            kind = "ambiguous" if u < P_AMBIGUOUS else "vague" if u < P_AMBIGUOUS + P_VAGUE else "plain"
            text = compose(r, label, source, kind)
            if r.random() < P_TYPO:
                text = add_typos(r, text)
            text = re.sub(r"\s+", " ", text).strip()
            if not text or text.lower() in seen:        # duplicates only come from the controlled step below
                continue
            seen.add(text.lower())
            created = start + timedelta(seconds=r.randrange(span))
            rows.append(dict(text=text, source=source, created_at=created, label=label))
            made += 1
    for label in CLASS_SIZES:                           # the same message re-sent a few hours/days later
        for orig in r.sample([x for x in rows if x["label"] == label and x["source"] != "app_review"], DUPES_PER_CLASS):
            created = min(orig["created_at"] + timedelta(hours=r.randint(2, 96)), datetime(2026, 10, 31, 23, 59))
            rows.append(dict(orig, text=vary_duplicate(r, orig["text"]), created_at=created))
    rows.sort(key=lambda x: (x["created_at"], x["text"]))
    with open(OUT_DIR / "texts.csv", "w", encoding="utf-8", newline="") as ft, \
            open(OUT_DIR / "labels.csv", "w", encoding="utf-8", newline="") as fl:
        wt, wl = csv.writer(ft, lineterminator="\n"), csv.writer(fl, lineterminator="\n")
        wt.writerow(["id", "text", "source", "created_at"])
        wl.writerow(["id", "label", "annotator"])
        for i, row in enumerate(rows, start=1):
            rid = f"t{i:06d}"
            wt.writerow([rid, row["text"], row["source"], row["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ")])
            wl.writerow([rid, row["label"], weighted(r, ANNOTATORS)])
    print(f"wrote {len(rows)} rows to {OUT_DIR}")


if __name__ == "__main__":
    main()
