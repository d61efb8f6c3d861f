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
# Paraphrases: the same intents said in other words (synonyms, indirect phrasing). Each one is used exactly once,
# and they deliberately avoid the keywords of their intent's templates above (refund, cancel, log in, tracking, ...).
PARAPHRASES = {
    "refund_request": [
        "I sent the {product} back on {date} and I'm still waiting to see that {amount} again.",
        "Your shop billed me two times for a single purchase. The second one should never have happened, I'd like it undone.",
        "Could the {amount} go onto {card} again? I don't want the item after all.",
        "The box went back to your warehouse last week, when will I be reimbursed?",
        "I'm owed {amount} for the stuff I posted to your returns centre and my bank shows nothing yet.",
        "Free shipping was promised, yet {amount} was added for postage. I'd like that sum credited to me.",
        "I don't want a voucher or store credit, I want the cash I spent.",
        "My bank statement lists the same purchase from you twice. One of those needs to be reimbursed.",
        "Your driver picked up the return ages ago. Where's my reimbursement?",
        "Please compensate me the {amount}, the goods never matched the photos and they are back with you now.",
        "The gift was unwanted so I mailed it back unopened. How soon will the funds land in my account?",
        "I got billed after the trial ended even though I never touched the service. I'd like those euros returned.",
        "Can you compensate the difference? The price dropped by half two days after I bought it.",
        "You debited {amount} from {card} for something I never ordered. I expect to see that reversed.",
        "I've been out of pocket {amount} for {n} weeks now since shipping the items to your returns centre.",
        "You called off order {order} yourselves, so why is that sum still missing from my balance?",
        "The next-day shipping premium was wasted, it took a week. I'd like it reimbursed.",
        "The carrier says the returned box reached you, yet my balance hasn't been restored.",
        "A chargeback is my next step if the {amount} isn't repaid by Friday.",
        "Somebody on your end billed me three times for one pair of shoes. Only one purchase was mine.",
        "I'd like to recover what I spent on the {product}; it left here in the original packaging.",
        "Kindly return the funds for {order}, I no longer want it and your warehouse has it again.",
        "Your invoice shows a double debit for the same basket. Please cancel out the duplicate.",
        "How many business days until the reimbursement shows up on my Visa?",
        "I sent it back within the 14-day window, so I'm entitled to every cent.",
        "After my membership ended you still took another instalment. I want that repaid.",
        "The sale price wasn't applied when I bought it, so I'd like the overcharge handed back.",
        "I was promised a partial credit for the scratched lid. That still hasn't been paid out.",
        "My sister bought this for me by mistake. Can the amount go back to her card?",
        "I need the {amount} paid back to me, you've had the goods in their packaging since {date}.",
        "Please send the cash for the shoes I mailed you to my PayPal, not as a gift card.",
        "The warehouse confirmed receipt of my package, so why am I still short {amount}?",
        "I'm asking to be reimbursed for the {amount} customs fee, your site said duties were included.",
        "What I spent on the jacket I posted to you on {date} still hasn't reappeared. What's the hold-up?",
        "Your team agreed to compensate me for the shattered glass. When will that be settled?",
        "I overpaid by {amount} because the coupon didn't apply. Can you make up the difference?",
        "Please repay the annual fee, I only noticed the automatic charge a day after it happened.",
        "Everything went via {carrier} to your returns address; it reached you on {date}. Still nothing credited.",
        "Half the set is with you again, so half the price is due to me.",
        "The goods got lost somewhere and I don't want them resent. I just want to be reimbursed.",
        "Can the purchase of {order} be undone? It was the wrong size and it's with you already.",
        "The exchange you offered doesn't work for me. I'd rather have the sum returned.",
        "Please issue a credit note for {amount}, the item went back unused.",
        "I paid extra for gift wrapping and it came plain. Those {amount} are owed to me.",
        "I've posted the goods to you twice now and twice no payout. Sort it please.",
        "What happens to my cash now that the return label has been scanned?",
        "The billing mistake on {date} cost me {amount}. I'd like it put right on my statement.",
        "I want the deposit for the pre-order repaid, I've changed my mind.",
        "Your app showed a lower total than what you took, so hand over the difference please.",
        "Transfer the {amount} to my bank account, the item reached you on {date}.",
        "Your shop owes me {amount}. The jacket was sent to you unworn and you've confirmed receipt.",
        "I'd like to be made whole for the {amount} you took on {date} by mistake.",
        "It's been a month since you got my return. Is a bank transfer on its way?",
        "I was overcharged by {amount} on order {order}. Please settle that.",
        "Since you shipped the wrong colour, I'd like my {amount} reimbursed rather than a swap.",
        "You have the item and I have nothing. That's not how a return works.",
        "The promised goodwill gesture of {amount} never hit my bank.",
        "Please transfer what I spent on order {order}, I decided against it and posted it on {date}.",
        "My statement still shows {amount} debited for shoes you accepted at the returns desk.",
        "The coupon wasn't honoured, so I expect the discount amount paid out to me.",
    ],
    "delivery_status": [
        "The thing I bought on {date} never showed up.",
        "Still nothing in my letterbox from the purchase I made a fortnight ago.",
        "My {product} seems to have vanished somewhere between your warehouse and my flat.",
        "Is the stuff I paid for actually on its way to me?",
        "The van never came, even though I stayed home the whole day.",
        "I've been checking my doorstep every morning for the {product}, nothing.",
        "How much longer until the {product} reaches me? It's been {n} days.",
        "Has my purchase even left your warehouse yet?",
        "The website promised it by the weekend and the weekend came and went.",
        "My neighbours got their things from you yesterday, mine are nowhere to be seen.",
        "Could you find out where my goods are? The map online hasn't moved since Tuesday.",
        "I bought a present for my daughter and it still hasn't turned up.",
        "The box you sent me seems to be held at customs, what's happening with it?",
        "When can I expect the {product} at my door?",
        "It's been sitting at the sorting centre in {city} for ages. Will it ever move?",
        "Did my stuff go missing on the way? I've heard nothing since buying it.",
        "The status page still says 'preparing' after {n} days. Is anything happening?",
        "I was told to expect a knock on the door today. No knock, no note, nothing.",
        "The postman says there's nothing for me. Where did my purchase go?",
        "Could you chase the carrier? My items are overdue by a week.",
        "The estimated date was {date}, today is way past that and I'm still empty-handed.",
        "I need the {product} before my trip on Friday. Will it get here in time?",
        "Has my stuff been dispatched yet or is it still waiting in stock?",
        "The reference number you gave me shows nothing at all on {carrier}'s site.",
        "A photo was uploaded as proof of drop-off but that's not my house.",
        "So far only the charger has come. When does the rest of my purchase follow?",
        "The goods left {city} on {date} and have been in limbo since.",
        "Nobody has been by with my items and the time slot you gave me closed an hour ago.",
        "I'm still waiting on the {product} I spent {amount} on.",
        "I got a message that it was handed to a neighbour, but none of my neighbours have it.",
        "Any idea when my things will reach {city}?",
        "What's the ETA for the stuff I bought on {date}?",
        "Your email said 'out for drop-off' three days running. Is it going to come at all?",
        "I'm starting to wonder if my purchase is ever going to make it to me.",
        "It's been two weeks. Is my {product} travelling by slow boat or something?",
        "The pickup locker code never came through and the item isn't there.",
        "When will my goods be sent out? I paid for the fast option.",
        "My items appear to be touring Europe, last seen in {city}.",
        "Could you confirm the {product} has actually been posted?",
        "I'm stuck at home waiting for a drop-off that never happens.",
        "The map in the app shows the van drove past my road and turned around.",
        "It's been more than a week since I bought it and nothing has come through the door.",
        "Is there a problem at the warehouse? My purchase hasn't budged since {date}.",
        "My mum's birthday gift hasn't reached her yet, can you see where it's got to?",
        "Nothing has landed on my porch yet from what I bought on {date}.",
        "Still waiting on the door to ring. Any sign of my stuff?",
        "Whatever I bought on {date} hasn't made it here yet.",
        "Has anyone handed the box over to {carrier} yet?",
        "I'd love to know the whereabouts of the {product}.",
        "It's now {n} days and my flat is still {product}-less.",
        "Could the driver be lost? Nothing reached {city} so far.",
        "I ordered a gift for Sunday; will it be here by then?",
        "Please let me know the expected day it lands on my doorstep.",
        "My items were meant to be dropped at the locker yesterday. The locker is empty.",
        "The online status has said 'in transit' since {date}. Is that normal?",
        "Nothing has come in the post from you yet. Should I keep waiting?",
        "Could you check whether my bits have been sent out?",
    ],
    "login_problem": [
        "The app won't let me in, it keeps saying my details don't match.",
        "I'm stuck at the welcome screen, my credentials get refused every time.",
        "I've forgotten the passcode I set for my profile and the recovery email never comes.",
        "Whenever I try to get into my profile, it just bounces me back to the start page.",
        "I'm barred from my own profile after a few wrong guesses.",
        "The six-digit verification text never reaches my phone, so I'm stuck outside.",
        "My phone number changed, so the security code goes to an old SIM and I can't get in.",
        "I can't access anything since the update, it just says 'session expired' over and over.",
        "Each time I enter my details the screen goes blank on {device}.",
        "Your authenticator step fails and I can't get past it.",
        "I've been shut out of my profile since {date}.",
        "It says the username doesn't exist, but I've shopped with you for {years} years.",
        "I type in my credentials and nothing happens, just a spinning wheel.",
        "Face ID stopped recognising me in {device} and there's no fallback.",
        "Every time I open the app it asks who I am and then kicks me straight back out.",
        "The 'forgot my details' link sends me round in circles.",
        "How do I regain access? I no longer have the phone that receives my codes.",
        "My credentials work on the website but not on {device}.",
        "The app claims {email} is unknown. Which address am I supposed to use to get in?",
        "Someone changed my details and now I'm shut out of my own profile.",
        "I keep getting 'too many attempts, try later' and later never comes.",
        "It won't accept my passcode even though I copy and paste it.",
        "Can't reach my dashboard at all, the app keeps asking me to identify myself.",
        "The text with the code takes hours to come, by then it has expired.",
        "After the update the app forgets me and won't let me back in.",
        "I'm trying to view my purchase history, but the entry page won't accept me.",
        "The Google button does nothing when I tap it, so I can't get into Lumo.",
        "The security question answers I set up years ago aren't accepted anymore.",
        "I get an error 401 when I try to open my profile on {device}.",
        "Access denied, it says, but it's my own profile.",
        "I need to get into my profile to download an invoice, but it won't let me.",
        "The magic link in the email opens a blank page instead of letting me through.",
        "The credentials saved in my browser suddenly aren't accepted anymore.",
        "The captcha loops forever, so I never get to my dashboard.",
        "My profile froze after I mistyped a few times.",
        "No matter what I enter, it says the combination is incorrect.",
        "The verification email comes but the button inside it is dead.",
        "I'm a member but the app treats me like a stranger.",
        "The app asks me to authenticate again every five minutes, then fails.",
        "I'm unable to get past the front page of the app on {device}.",
        "The code from the text message is refused as wrong every single time.",
        "I'm getting an 'authentication error' whenever I open {device}.",
        "I'm out of my own profile, the recovery page says my email is unknown.",
        "How do I get my credentials sorted? The app won't recognise me.",
        "The app bounces me to the welcome page after entering my details.",
        "Biometric unlock broke after the update and my passcode is refused too.",
        "My username is suddenly unknown to your system.",
        "It keeps saying my session is invalid the moment I open the shop.",
        "The security email with the link takes forever and then the link is dead.",
        "I can't get past the screen asking for my credentials on {device}.",
    ],
    "payment_failed": [
        "Your site refuses my Visa even though the account has plenty in it.",
        "The transaction bounces every time I hit 'buy now'.",
        "My bank never saw the attempt, but your page says it didn't go through.",
        "I can't complete the purchase, the last step throws an error.",
        "It keeps telling me 'insufficient funds', which is nonsense, I have money in the account.",
        "The membership renewal bounced and I don't know why.",
        "Every time I try to buy the {product} it says the transaction could not be processed.",
        "My Mastercard works everywhere except in your shop.",
        "The bank verification pop-up closes and the purchase is abandoned.",
        "I'm trying to give you money and your system won't take it.",
        "The basket empties itself at the final step and no purchase is made.",
        "My gift card balance won't go through when I try to use it.",
        "Your app says 'transaction error 402' when I confirm the purchase.",
        "My debit card isn't accepted for the monthly fee, what other options are there?",
        "I wanted to buy the {product} but the money just won't go through.",
        "Google Pay spins and then says something went wrong.",
        "The instalment option errors out at the final confirmation.",
        "I've entered my card details five times and your shop bounces it every time.",
        "The bank app asks me to approve, I approve, and your site still says unsuccessful.",
        "I can't get the monthly charge to process, it keeps bouncing back.",
        "The purchase attempt didn't succeed and now I'm worried I'll lose my discount.",
        "Your form won't accept my card number, it says invalid even though it's correct.",
        "Klarna won't go through for me, it stops at the very end.",
        "It says my bank turned down the transaction, but my bank says they didn't.",
        "The 'complete purchase' button greys out after I enter my CVV.",
        "My prepaid card gets turned down every time.",
        "Buying anything in the app ends in an 'unable to process' message.",
        "The direct debit for my {plan} bounced, how can I settle it by hand?",
        "I'm unable to finish buying the {product}, the money side of things just errors.",
        "The bank transfer option doesn't work, I get stuck on the confirm page.",
        "Card authorisation keeps timing out on {device}.",
        "Why won't your store take my money? I've tried three cards.",
        "I'm trying to top up my wallet balance and it fails each time.",
        "The total is {amount} and my limit is fine, yet the purchase won't complete.",
        "My corporate Amex gets refused by your shop.",
        "I keep getting 'do not honour' when buying from you.",
        "Your system says my card has expired but it's valid until 2029.",
        "The charge for my {plan} didn't go through, so it's paused. How do I settle the balance?",
        "Whenever I confirm the order the bank step throws me out with an error.",
        "The money won't leave my account, your shop just says 'try again later'.",
        "Buying the {product} fails at the very last click, three times now.",
        "I'm unable to settle the {amount}, the page rejects my bank details.",
        "The renewal of my {plan} didn't go through even though my Visa is fine.",
        "The secure code text from my bank arrives, but your shop then says 'error'.",
        "Every attempt to buy ends with 'transaction not authorised'.",
        "Your shop won't take my Maestro card, it worked last month.",
        "I tried to buy a voucher and the money part of it errors out each time.",
        "The amount gets reserved on my card, but your site then says the purchase didn't happen.",
    ],
    "cancel_subscription": [
        "I'd like to stop paying every month.",
        "I don't want to be billed for the {plan} going forward.",
        "No more recurring fees please, but I'll keep shopping with you now and then.",
        "I want to quit the membership but still be able to buy things occasionally.",
        "The monthly fee isn't worth it for me anymore, can you switch it off?",
        "I'd like the {plan} to lapse after this billing cycle.",
        "I'm not using the service enough, please stop the recurring billing.",
        "How do I opt out of the yearly renewal before it kicks in on {date}?",
        "Switch me to the free version, I don't want the paid tier anymore.",
        "Please make sure the {plan} doesn't roll over next month.",
        "I want out of the membership, but leave my profile and purchase history alone.",
        "Please halt the {amount} that gets taken from {card} each month.",
        "I'm tightening my budget and the membership has to go.",
        "Can you terminate the {plan} without closing my profile?",
        "The trial was nice but I don't want it to convert into a paid membership.",
        "I'd rather not be a member anymore, just a regular customer.",
        "My free month is nearly over and I don't wish to continue.",
        "I no longer want the monthly boxes, please stop sending them and stop billing me.",
        "Please drop my membership; I'm keeping my profile for one-off purchases.",
        "Don't charge me for another year, I'm opting out.",
        "I'd like to withdraw from the {plan} as of next month.",
        "I'm not going to renew, please make sure it doesn't happen automatically.",
        "The recurring fee should stop after {date}, I've decided not to continue.",
        "Take me off the monthly billing, I'll buy things individually instead.",
        "Where do I switch off the yearly membership in {device}?",
        "I want to go back to a basic free profile without the paid extras.",
        "Please terminate the recurring agreement on {card}.",
        "I've got too many memberships and yours is the one I'm dropping.",
        "Kindly make this my last billing month for the {plan}.",
        "I don't need the perks anymore, please stop the membership fees.",
        "I'm leaving the {plan} but not Lumo.",
        "Please discontinue my membership from the next cycle on.",
        "Is it possible to quit the paid tier but hold on to my saved addresses and history?",
        "The membership renews on {date} and I don't want it to.",
        "I'd like to opt out of the monthly box scheme.",
        "Not interested in the premium perks any longer, so no more billing please.",
        "I signed up for a year and that's enough. Please don't extend it.",
        "I don't wish to be charged again for the {plan} after {date}.",
        "Put my plan to sleep for good, but don't touch my login or orders.",
        "Please stop the automatic yearly charge, I'll shop without the perks.",
        "I signed up for the {plan} on a whim and I want out of it before the next cycle.",
        "The {amount} every month adds up, please terminate the plan.",
        "I want to keep my profile but quit paying for the extras.",
        "Could you make sure {card} isn't charged for the {plan} anymore?",
        "I'd like to leave the plan while keeping my order history.",
        "Please let my plan expire instead of rolling it over.",
        "I'm not renewing the {plan} this year, please note that.",
    ],
    "product_defect": [
        "The {gadget} died on me after {n} days of normal use.",
        "The {gadget} only works if I hold the cable at a certain angle.",
        "The lamp flickers like a horror film, surely that's not normal.",
        "There's a rattle inside the {gadget} like something came loose.",
        "The zip on my backpack split on its first outing.",
        "The watch screen has a line of dead pixels down the middle.",
        "My {wearable} won't hold a charge for more than an hour.",
        "The {gadget} gives off a burning smell after a few minutes.",
        "One of the cups came with a chip in the rim.",
        "The {gadget} was dead on arrival, no light, no sound, nothing.",
        "The right earcup crackles constantly, it's unusable.",
        "The blanket is already coming apart at the seams after one wash.",
        "The fan's blades wobble and scrape against the cage.",
        "The {gadget} switches itself off at random.",
        "Pieces are missing from the box, there's no way to assemble it.",
        "The handle on the kettle snapped off the first time I lifted it.",
        "The speaker distorts at any volume above half.",
        "The Kettle Mini leaks from the base onto the counter.",
        "The yoga mat is already peeling after a few sessions.",
        "Do you fix these under guarantee? The {gadget} gave up within a month.",
        "The button on the {gadget} is stuck and won't click.",
        "The air fryer's display shows an error code and it won't heat up.",
        "The pin fell out of the watch strap and the strap came off.",
        "The charging port on my {wearable} is loose.",
        "The grinder's motor hums but the blades don't spin.",
        "The headphones only play through one side.",
        "My {gadget} trips the fuse every time I plug it in.",
        "Please send me a new unit, this one came with a dent and won't power up.",
        "The non-stick coating in the fryer basket is flaking off into my food.",
        "Sound cuts in and out on my {wearable} every few seconds.",
        "The lamp's switch sparks when I press it.",
        "The {gadget} makes a high-pitched whine.",
        "The straps on the backpack tore within a week of light use.",
        "Bluetooth drops every minute on the {wearable}, even right next to my phone.",
        "I think I got a dud, the {gadget} won't respond to anything.",
        "The espresso cups have hairline fractures in the glaze.",
        "The smartwatch fogs up inside after a shower, so much for waterproof.",
        "The {gadget} gets hot enough to burn my hand after a minute.",
        "The {wearable} reboots itself every few minutes.",
        "The lid of the kettle won't close properly, steam pours out the side.",
        "My {gadget} came with a bent plug and won't fit any socket.",
        "The colour is peeling off the phone case after two days.",
        "The {gadget} hums but does nothing else.",
        "Half of the cups came chipped.",
        "The touch controls on the {wearable} react to nothing.",
        "The backpack's buckle shattered the first time I closed it.",
        "The {gadget} won't stay on for more than a few seconds.",
    ],
    "change_address": [
        "I've relocated to {city}, please make sure my things go to {street} from now on.",
        "I'm not living at the old place anymore, the new one is in {city}.",
        "Can you make the next shipment go to my office instead of home?",
        "We changed flats last month; could you correct my details so things come to the new place?",
        "My details still show my parents' house. I live in {city} now.",
        "Please have the driver bring it to my workplace instead, I'm never home during the day.",
        "The house number on my profile is wrong, it should be 12 not 21.",
        "There's a mistake in the zip code on my profile, it's {zip}.",
        "My billing details should reflect my new flat in {city}.",
        "I'm spending the summer in {city}, can my boxes go there until September?",
        "Can you swap the destination on {order} to my sister's place?",
        "I gave the wrong flat number when buying, it's 4B not 4A.",
        "I'm relocating on {date}; how do I make sure my {plan} boxes follow me?",
        "The location you have on file is outdated, we sold that house.",
        "Please change where you're sending {order}, I won't be at that place next week.",
        "Please update the invoicing details for {card}, I'm at a new residence.",
        "I typed my road name wrong at the end of the purchase, can you correct it?",
        "The building name is missing from my details, the driver won't find me without it.",
        "I'd like future purchases to go to a pickup point in {city} instead of my home.",
        "Could you amend the destination for my purchase? I've just relocated.",
        "Wrong town on my profile, it should be {city}.",
        "I'm at a new place since {date}. How do I edit where things get sent?",
        "Please replace my old home details with {street}, {city}.",
        "The apartment number is missing from what I typed in, can you add it?",
        "We're renovating, so please have everything go to my in-laws in {city} for now.",
        "I changed homes and the app still has the old one saved.",
        "Can you point my boxes to my new flat starting next week?",
        "My contact details need to show my new residence in {city}.",
        "Please fix the spelling of my road, the driver couldn't find it last time.",
        "Our family is settling in {city} now, so the old house details are useless.",
        "From {date} I'll be living at {street}, please make a note.",
        "Could everything from now on be sent to {city} rather than my old flat?",
        "Please correct the door number on my details, it's 7 not 17.",
        "I need the destination for {order} changed to my partner's flat.",
        "My employer's reception in {city} is a better drop-off spot, please use that.",
        "There's a typo in my town on file, it's {city}.",
        "I'm living somewhere new now and want future boxes there.",
        "Please use my new residence in {city} for invoices from now on.",
    ],
    "account_deletion": [
        "I want every trace of me gone from your systems.",
        "Please wipe my profile and everything you store about me.",
        "I'd like to exercise my right to be forgotten.",
        "Get rid of my Lumo profile for good, I won't be coming back.",
        "Under privacy law I want all my personal information destroyed.",
        "I'm done with Lumo entirely, shut down my profile and forget me.",
        "Please don't keep my name, my addresses or my card on file anymore, I'm leaving for good.",
        "I'd like my customer profile terminated permanently along with its history.",
        "How do I make my profile disappear completely?",
        "Stop storing my personal details and get rid of my login.",
        "I want my customer record purged, including past purchases.",
        "Please confirm in writing that you no longer hold any information about me.",
        "I'd like my profile wiped, not paused, wiped.",
        "Scrub {email} from every list and from your database.",
        "I never want to hear from Lumo again, and I don't want my details stored anywhere.",
        "Deactivate and destroy my user profile permanently.",
        "I'm asking for my entire profile to be permanently purged.",
        "My privacy matters to me, so please dispose of everything you know about me.",
        "I want out of Lumo completely, no profile, no history, nothing left behind.",
        "Please terminate my user profile and forget everything linked to {email}.",
        "Is there a way to wipe my Lumo profile myself, or do you have to do it?",
        "I'd like my Lumo identity gone, including my saved cards and history.",
        "Per Article 17, I want my personal information wiped from your servers.",
        "My late father had a profile with you; please shut it down and discard his details.",
        "Please don't just deactivate me, I want everything permanently gone.",
        "I don't trust your privacy practices anymore; purge my information.",
        "Dispose of my saved addresses, purchase history and profile, I'm leaving Lumo.",
        "Make my user profile vanish from Lumo permanently.",
        "I'm asking you to destroy all records you keep about me.",
        "Please get rid of me as a customer completely, including the login and history.",
        "Please erase me from your customer records.",
        "I want my login, saved cards and addresses gone and my details forgotten.",
        "No more Lumo for me, and I don't want you holding onto anything of mine.",
        "Kindly scrap my profile and every bit of info attached to it.",
        "Please shut my profile and discard all the details you collected.",
        "I'd like my details permanently forgotten by your company.",
        "Make sure nothing about me remains in your database once I leave.",
        "Wipe the slate clean: no profile, no order records, no saved cards.",
    ],
}
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


def compose(r, label, source, kind, core=None):
    """One message. `core` (kind "paraphrase") replaces the intent's templates; the framing stays the same."""
    spec, memo = INTENTS[label], {}
    other = r.choice([k for k in INTENTS if k != label])
    if core is not None:
        body = [(r.choice(REVIEW_OPEN) if source == "app_review" else "") + fill(r, core, memo)]
    elif kind == "vague":
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


# Out of scope (label out_of_scope, the default oos.label): messages about nothing the shop does,
# which reached the support inbox in November 2026 and were labelled as such. They show how the
# pipeline uses out-of-scope examples (docs/out_of_scope.md). One row each, their own random stream
# and dates after every intent row, so the rows above (and their ids) are as they were.
OUT_OF_SCOPE = [
    "what is the weather going to be like in Lyon this weekend",
    "can you recommend a good pizza place near the central station",
    "who won the football match last night",
    "how many calories are in a banana",
    "tell me a joke please",
    "what time is it in Tokyo right now",
    "how do I make sourdough bread at home",
    "is it going to rain tomorrow in Berlin",
    "what's the capital of Australia",
    "can you help me with my maths homework, what is 17 times 23",
    "which movie should I watch tonight",
    "how do I change a flat tyre on my bike",
    "what are the opening hours of the post office on Sunday",
    "translate good morning into Italian",
    "how tall is the Eiffel Tower",
    "my neighbour's dog barks all night, what can I do",
    "any tips for a job interview tomorrow",
    "what's a good name for a golden retriever puppy",
    "how long should I boil an egg",
    "who is the president of France",
    "recommend me a book for a long flight",
    "how do I get rid of ants in the kitchen",
    "what's the best way to learn Spanish quickly",
    "are you a human or a robot",
    "when does the next full moon happen",
    "how do I unblock a kitchen sink",
    "what's the exchange rate between the pound and the yen today",
    "can you write a poem about autumn",
    "how many players are on a rugby team",
    "which train goes from Paris to Geneva",
    "I need a recipe for vegan lasagne",
    "what's the meaning of life",
    "how do I fix my car's air conditioning",
    "best hiking trails in the Alps in October",
    "how do I plant tulip bulbs",
    "can you book me a table for two at 8pm",
    "what's the score in the tennis final",
    "how do I renew my passport",
    "where can I watch the election results",
    "what should I cook for dinner tonight",
    "how far is the moon from the earth",
    "I'm bored, let's chat about music",
    "who painted the Mona Lisa",
    "how do I stop my cat scratching the sofa",
    "what's the population of Canada",
    "how do I register to vote",
    "what are the symptoms of the flu",
    "good morning, how are you today",
    "can you order me a taxi to the airport",
    "what's the best smartphone camera app for night photos",
    "how do I get a fishing licence",
    "is the museum open on bank holidays",
    "how do I brew cold brew coffee",
    "which wine goes with salmon",
    "what's the tallest mountain in Africa",
    "how can I improve my running time for a 10k",
    "my landlord won't fix the heating, what are my rights",
    "what's the difference between a crocodile and an alligator",
    "how do you say thank you in Japanese",
    "where is the nearest pharmacy open now",
]


def out_of_scope_rows():
    """The out-of-scope rows: chat or e-mail framing, November 2026."""
    r = random.Random(SEED + 2)
    start, span = datetime(2026, 11, 1), int(timedelta(days=30).total_seconds())
    rows = []
    for core in OUT_OF_SCOPE:
        if r.random() < 0.6:
            source, text = "chat", f"{r.choice(OPEN_CHAT)}{core}{r.choice(CLOSE_CHAT)}"
        else:
            opener, close = r.choice(OPEN_EMAIL), r.choice(CLOSE_EMAIL).format(name=r.choice(NAMES))
            body = core if opener.endswith(",") else core[0].upper() + core[1:]
            source, text = "email", f"{opener} {body}? {close}"
        created = start + timedelta(seconds=r.randrange(span))
        rows.append(dict(text=re.sub(r"\s+", " ", text).strip(), source=source, created_at=created,
                         label="out_of_scope", kind="out_of_scope", annotator=weighted(r, ANNOTATORS)))
    return sorted(rows, key=lambda x: (x["created_at"], x["text"]))


def build_rows():
    """All rows (dicts with text, source, created_at, label, annotator and kind), in created_at order."""
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
            rows.append(dict(text=text, source=source, created_at=created, label=label, kind=kind))
            made += 1
    # Paraphrases: every entry of PARAPHRASES once, framed like any other message (same sources, openers, context,
    # typos). Their own random stream, so adding or editing one leaves the template-based rows as they are.
    rp = random.Random(SEED + 1)
    for label, cores in PARAPHRASES.items():
        for core in cores:
            for _ in range(20):
                source = weighted(rp, SOURCES)
                text = compose(rp, label, source, "paraphrase", core)
                if rp.random() < P_TYPO:
                    text = add_typos(rp, text)
                text = re.sub(r"\s+", " ", text).strip()
                if text.lower() not in seen:
                    break
            seen.add(text.lower())
            created = start + timedelta(seconds=rp.randrange(span))
            rows.append(dict(text=text, source=source, created_at=created, label=label, kind="paraphrase"))
    for label in CLASS_SIZES:                           # the same message re-sent a few hours/days later
        templated = [x for x in rows if x["label"] == label and x["kind"] != "paraphrase"]
        for orig in r.sample([x for x in templated if x["source"] != "app_review"], DUPES_PER_CLASS):
            created = min(orig["created_at"] + timedelta(hours=r.randint(2, 96)), datetime(2026, 10, 31, 23, 59))
            rows.append(dict(orig, text=vary_duplicate(r, orig["text"]), created_at=created))
    rows.sort(key=lambda x: (x["created_at"], x["text"]))
    for row in rows:
        row["annotator"] = weighted(r, ANNOTATORS)
    return rows + out_of_scope_rows()


def main():
    rows = build_rows()
    with open(OUT_DIR / "texts.csv", "w", encoding="utf-8", newline="") as ft, \
            open(OUT_DIR / "labels.csv", "w", encoding="utf-8", newline="") as fl:
        wt, wl = csv.writer(ft, lineterminator="\n"), csv.writer(fl, lineterminator="\n")
        wt.writerow(["id", "text", "source", "created_at"])
        wl.writerow(["id", "label", "annotator"])
        for i, row in enumerate(rows, start=1):
            rid = f"t{i:06d}"
            wt.writerow([rid, row["text"], row["source"], row["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ")])
            wl.writerow([rid, row["label"], row["annotator"]])
    print(f"wrote {len(rows)} rows to {OUT_DIR}")


if __name__ == "__main__":
    main()
