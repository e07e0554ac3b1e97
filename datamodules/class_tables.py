"""Class identifiers of the benchmarks: facts from the project's reference tables (`shared/reference/classes/`,
whose README gives each table's provenance), kept in code so an installed package carries them.
tests/test_class_tables.py compares every table here with its reference file.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BreedsClass:
    """A BREEDS class: its name and the ImageNet subclasses (wnids) it is made of, on each side of the shift.

    A class's label is its position in its task's tuple (the BREEDS superclass order the LP-FT code uses);
    the wnids keep the generator's draw order.
    """

    name: str
    source: tuple[str, ...]
    target: tuple[str, ...]


# Living-17: 17 classes, 2 source + 2 target subclasses each (BREEDS `make_living17`, split "rand").
LIVING17 = (
    BreedsClass("salamander",
                source=("n01631663", "n01632777"),
                target=("n01630670", "n01632458")),
    BreedsClass("turtle",
                source=("n01669191", "n01665541"),
                target=("n01664065", "n01667114")),
    BreedsClass("lizard",
                source=("n01685808", "n01689811"),
                target=("n01694178", "n01675722")),
    BreedsClass("snake, serpent, ophidian",
                source=("n01740131", "n01735189"),
                target=("n01751748", "n01742172")),
    BreedsClass("spider",
                source=("n01774750", "n01773157"),
                target=("n01773797", "n01775062")),
    BreedsClass("grouse",
                source=("n01796340", "n01798484"),
                target=("n01797886", "n01795545")),
    BreedsClass("parrot",
                source=("n01818515", "n01820546"),
                target=("n01817953", "n01819313")),
    BreedsClass("crab",
                source=("n01978287", "n01980166"),
                target=("n01978455", "n01981276")),
    BreedsClass("dog, domestic dog, Canis familiaris",
                source=("n02088466", "n02086079"),
                target=("n02111500", "n02086910")),
    BreedsClass("wolf",
                source=("n02114855", "n02114712"),
                target=("n02114548", "n02114367")),
    BreedsClass("fox",
                source=("n02120505", "n02120079"),
                target=("n02119022", "n02119789")),
    BreedsClass("domestic cat, house cat, Felis domesticus, Felis catus",
                source=("n02123159", "n02124075"),
                target=("n02123394", "n02123597")),
    BreedsClass("bear",
                source=("n02134418", "n02133161"),
                target=("n02134084", "n02132136")),
    BreedsClass("beetle",
                source=("n02172182", "n02174001"),
                target=("n02167151", "n02168699")),
    BreedsClass("butterfly",
                source=("n02281406", "n02276258"),
                target=("n02280649", "n02277742")),
    BreedsClass("ape",
                source=("n02483362", "n02480495"),
                target=("n02480855", "n02481823")),
    BreedsClass("monkey",
                source=("n02490219", "n02493509"),
                target=("n02493793", "n02492660")),
)

# Entity-30: 30 classes, 4 source + 4 target subclasses each (BREEDS `make_entity30`, split "rand").
ENTITY30 = (
    BreedsClass("serpentes",
                source=("n01749939", "n01734418", "n01735189", "n01728572"),
                target=("n01742172", "n01729977", "n01728920", "n01744401")),
    BreedsClass("passerine, passeriform bird",
                source=("n01531178", "n01530575", "n01601694", "n01592084"),
                target=("n01582220", "n01532829", "n01537544", "n01560419")),
    BreedsClass("saurian",
                source=("n01689811", "n01692333", "n01682714", "n01693334"),
                target=("n01695060", "n01694178", "n01687978", "n01675722")),
    BreedsClass("arachnid, arachnoid",
                source=("n01770081", "n01773549", "n01770393", "n01774384"),
                target=("n01775062", "n01773157", "n01776313", "n01774750")),
    BreedsClass("aquatic bird",
                source=("n02058221", "n02027492", "n02012849", "n02002556"),
                target=("n01855672", "n02033041", "n02013706", "n01847000")),
    BreedsClass("crustacean",
                source=("n01985128", "n01984695", "n01986214", "n01978287"),
                target=("n01981276", "n01978455", "n01983481", "n01980166")),
    BreedsClass("carnivore",
                source=("n02091032", "n02443484", "n02093647", "n02110806"),
                target=("n02099267", "n02091635", "n02086240", "n02096585")),
    BreedsClass("insect",
                source=("n02264363", "n02190166", "n02226429", "n02281406"),
                target=("n02168699", "n02259212", "n02172182", "n02276258")),
    BreedsClass("ungulate, hoofed mammal",
                source=("n02437616", "n02423022", "n02391049", "n02403003"),
                target=("n02395406", "n02398521", "n02422106", "n02397096")),
    BreedsClass("primate",
                source=("n02486410", "n02492660", "n02497673", "n02481823"),
                target=("n02483708", "n02500267", "n02492035", "n02486261")),
    BreedsClass("bony fish",
                source=("n02536864", "n01440764", "n02643566", "n02606052"),
                target=("n02640242", "n02655020", "n02526121", "n02641379")),
    BreedsClass("barrier",
                source=("n02894605", "n03930313", "n04501370", "n02788148"),
                target=("n03000134", "n04326547", "n03160309", "n04604644")),
    BreedsClass("building, edifice",
                source=("n02871525", "n02980441", "n03788195", "n02927161"),
                target=("n03461385", "n04462240", "n03877845", "n02814860")),
    BreedsClass("electronic equipment",
                source=("n04004767", "n03902125", "n03759954", "n03085013"),
                target=("n03777754", "n02979186", "n03782006", "n03187595")),
    BreedsClass("footwear, legwear",
                source=("n03047690", "n03680355", "n03710637", "n04120489"),
                target=("n04133789", "n03623198", "n03124043", "n03026506")),
    BreedsClass("garment",
                source=("n02669723", "n02730930", "n03770439", "n03404251"),
                target=("n03594734", "n04532106", "n04136333", "n04371430")),
    BreedsClass("headdress, headgear",
                source=("n03929855", "n03476684", "n04209133", "n02869837"),
                target=("n02807133", "n03124170", "n02817516", "n03127747")),
    BreedsClass("home appliance, household appliance",
                source=("n04554684", "n03761084", "n03133878", "n04517823"),
                target=("n04442312", "n03297495", "n04265275", "n03207941")),
    BreedsClass("kitchen utensil",
                source=("n03733805", "n03041632", "n03063689", "n04270147"),
                target=("n03400231", "n03062245", "n04476259", "n02939185")),
    BreedsClass("measuring instrument, measuring system, measuring device",
                source=("n03197337", "n02708093", "n03891332", "n03706229"),
                target=("n02794156", "n04548280", "n03544143", "n03196217")),
    BreedsClass("motor vehicle, automotive vehicle",
                source=("n03670208", "n04146614", "n03785016", "n03100240"),
                target=("n04467665", "n02814533", "n03977966", "n03417042")),
    BreedsClass("musical instrument, instrument",
                source=("n03394916", "n03720891", "n03452741", "n04515003"),
                target=("n02676566", "n03854065", "n03272010", "n04536866")),
    BreedsClass("neckwear",
                source=("n03325584", "n03814639", "n02834397", "n04591157"),
                target=("n03814906", "n04325704", "n02883205", "n02865351")),
    BreedsClass("sports equipment",
                source=("n04228054", "n03255030", "n03134739", "n04039381"),
                target=("n04118538", "n02777292", "n03535780", "n04409515")),
    BreedsClass("tableware",
                source=("n03775546", "n04560804", "n02823750", "n04557648"),
                target=("n03443371", "n04591713", "n03063599", "n07579787")),
    BreedsClass("tool",
                source=("n04033901", "n03075370", "n03874599", "n04153751"),
                target=("n03388183", "n04154565", "n04208210", "n04456115")),
    BreedsClass("vessel, watercraft",
                source=("n03095699", "n03662601", "n02687172", "n04483307"),
                target=("n03673027", "n04606251", "n02981792", "n04612504")),
    BreedsClass("dish",
                source=("n07875152", "n07711569", "n07873807", "n07697313"),
                target=("n07880968", "n07590611", "n07871810", "n07697537")),
    BreedsClass("vegetable, veggie, veg",
                source=("n07716358", "n07718472", "n07717556", "n07718747"),
                target=("n07715103", "n07716906", "n07717410", "n07730033")),
    BreedsClass("fruit",
                source=("n07745940", "n07753275", "n07754684", "n07742313"),
                target=("n12768682", "n12144580", "n13133613", "n12267677")),
)

# The 200 ImageNet-1k wnids of ImageNet-R and of ImageNet-A, sorted (so also in ascending 1k-index order).
IMAGENET_R_WNIDS = tuple("""
n01443537 n01484850 n01494475 n01498041 n01514859 n01518878 n01531178 n01534433 n01614925 n01616318
n01630670 n01632777 n01644373 n01677366 n01694178 n01748264 n01770393 n01774750 n01784675 n01806143
n01820546 n01833805 n01843383 n01847000 n01855672 n01860187 n01882714 n01910747 n01944390 n01983481
n01986214 n02007558 n02009912 n02051845 n02056570 n02066245 n02071294 n02077923 n02085620 n02086240
n02088094 n02088238 n02088364 n02088466 n02091032 n02091134 n02092339 n02094433 n02096585 n02097298
n02098286 n02099601 n02099712 n02102318 n02106030 n02106166 n02106550 n02106662 n02108089 n02108915
n02109525 n02110185 n02110341 n02110958 n02112018 n02112137 n02113023 n02113624 n02113799 n02114367
n02117135 n02119022 n02123045 n02128385 n02128757 n02129165 n02129604 n02130308 n02134084 n02138441
n02165456 n02190166 n02206856 n02219486 n02226429 n02233338 n02236044 n02268443 n02279972 n02317335
n02325366 n02346627 n02356798 n02363005 n02364673 n02391049 n02395406 n02398521 n02410509 n02423022
n02437616 n02445715 n02447366 n02480495 n02480855 n02481823 n02483362 n02486410 n02510455 n02526121
n02607072 n02655020 n02672831 n02701002 n02749479 n02769748 n02793495 n02797295 n02802426 n02808440
n02814860 n02823750 n02841315 n02843684 n02883205 n02906734 n02909870 n02939185 n02948072 n02950826
n02951358 n02966193 n02980441 n02992529 n03124170 n03272010 n03345487 n03372029 n03424325 n03452741
n03467068 n03481172 n03494278 n03495258 n03498962 n03594945 n03602883 n03630383 n03649909 n03676483
n03710193 n03773504 n03775071 n03888257 n03930630 n03947888 n04086273 n04118538 n04133789 n04141076
n04146614 n04147183 n04192698 n04254680 n04266014 n04275548 n04310018 n04325704 n04347754 n04389033
n04409515 n04465501 n04487394 n04522168 n04536866 n04552348 n04591713 n07614500 n07693725 n07695742
n07697313 n07697537 n07714571 n07714990 n07718472 n07720875 n07734744 n07742313 n07745940 n07749582
n07753275 n07753592 n07768694 n07873807 n07880968 n07920052 n09472597 n09835506 n10565667 n12267677
""".split())

IMAGENET_A_WNIDS = tuple("""
n01498041 n01531178 n01534433 n01558993 n01580077 n01614925 n01616318 n01631663 n01641577 n01669191
n01677366 n01687978 n01694178 n01698640 n01735189 n01770081 n01770393 n01774750 n01784675 n01819313
n01820546 n01833805 n01843383 n01847000 n01855672 n01882714 n01910747 n01914609 n01924916 n01944390
n01985128 n01986214 n02007558 n02009912 n02037110 n02051845 n02077923 n02085620 n02099601 n02106550
n02106662 n02110958 n02119022 n02123394 n02127052 n02129165 n02133161 n02137549 n02165456 n02174001
n02177972 n02190166 n02206856 n02219486 n02226429 n02231487 n02233338 n02236044 n02259212 n02268443
n02279972 n02280649 n02281787 n02317335 n02325366 n02346627 n02356798 n02361337 n02410509 n02445715
n02454379 n02486410 n02492035 n02504458 n02655020 n02669723 n02672831 n02676566 n02690373 n02701002
n02730930 n02777292 n02782093 n02787622 n02793495 n02797295 n02802426 n02814860 n02815834 n02837789
n02879718 n02883205 n02895154 n02906734 n02948072 n02951358 n02980441 n02992211 n02999410 n03014705
n03026506 n03124043 n03125729 n03187595 n03196217 n03223299 n03250847 n03255030 n03291819 n03325584
n03355925 n03384352 n03388043 n03417042 n03443371 n03444034 n03445924 n03452741 n03483316 n03584829
n03590841 n03594945 n03617480 n03666591 n03670208 n03717622 n03720891 n03721384 n03724870 n03775071
n03788195 n03804744 n03837869 n03840681 n03854065 n03888257 n03891332 n03935335 n03982430 n04019541
n04033901 n04039381 n04067472 n04086273 n04099969 n04118538 n04131690 n04133789 n04141076 n04146614
n04147183 n04179913 n04208210 n04235860 n04252077 n04252225 n04254120 n04270147 n04275548 n04310018
n04317175 n04344873 n04347754 n04355338 n04366367 n04376876 n04389033 n04399382 n04442312 n04456115
n04482393 n04507155 n04509417 n04532670 n04540053 n04554684 n04562935 n04591713 n04606251 n07583066
n07695742 n07697313 n07697537 n07714990 n07718472 n07720875 n07734744 n07749582 n07753592 n07760859
n07768694 n07831146 n09229709 n09246464 n09472597 n09835506 n11879895 n12057211 n12144580 n12267677
""".split())

# DomainNet, SENTRY 40-class subset, in label order. Not alphabetical: the SENTRY lists" labels are the truth.
DOMAINNET40 = (
    "airplane", "ambulance", "apple", "backpack", "banana", "bathtub", "bear", "bed",
    "bee", "bicycle", "bird", "book", "bridge", "bus", "cake", "calculator",
    "camera", "car", "cat", "chair", "clock", "cow", "dog", "dolphin",
    "duck", "elephant", "fence", "fork", "horse", "house", "rabbit", "scissors",
    "strawberry", "table", "telephone", "truck", "butterfly", "sheep", "drums", "donut",
)

# DomainNet's 345 classes in the label order of its official image lists (`<domain>_{train,test}.txt` of
# ai.bu.edu/M3SDA; the order thuml/Transfer-Learning-Library's DomainNet.CLASSES lists): alphabetical within each case,
# the capitalised The_* after `tent`. Each list line's class folder is checked against it.
DOMAINNET345 = (
    "aircraft_carrier", "airplane", "alarm_clock", "ambulance", "angel", "animal_migration", "ant", "anvil",
    "apple", "arm", "asparagus", "axe", "backpack", "banana", "bandage", "barn", "baseball", "baseball_bat",
    "basket", "basketball", "bat", "bathtub", "beach", "bear", "beard", "bed", "bee", "belt", "bench", "bicycle",
    "binoculars", "bird", "birthday_cake", "blackberry", "blueberry", "book", "boomerang", "bottlecap", "bowtie",
    "bracelet", "brain", "bread", "bridge", "broccoli", "broom", "bucket", "bulldozer", "bus", "bush", "butterfly",
    "cactus", "cake", "calculator", "calendar", "camel", "camera", "camouflage", "campfire", "candle", "cannon",
    "canoe", "car", "carrot", "castle", "cat", "ceiling_fan", "cello", "cell_phone", "chair", "chandelier",
    "church", "circle", "clarinet", "clock", "cloud", "coffee_cup", "compass", "computer", "cookie", "cooler",
    "couch", "cow", "crab", "crayon", "crocodile", "crown", "cruise_ship", "cup", "diamond", "dishwasher",
    "diving_board", "dog", "dolphin", "donut", "door", "dragon", "dresser", "drill", "drums", "duck", "dumbbell",
    "ear", "elbow", "elephant", "envelope", "eraser", "eye", "eyeglasses", "face", "fan", "feather", "fence",
    "finger", "fire_hydrant", "fireplace", "firetruck", "fish", "flamingo", "flashlight", "flip_flops",
    "floor_lamp", "flower", "flying_saucer", "foot", "fork", "frog", "frying_pan", "garden", "garden_hose",
    "giraffe", "goatee", "golf_club", "grapes", "grass", "guitar", "hamburger", "hammer", "hand", "harp", "hat",
    "headphones", "hedgehog", "helicopter", "helmet", "hexagon", "hockey_puck", "hockey_stick", "horse", "hospital",
    "hot_air_balloon", "hot_dog", "hot_tub", "hourglass", "house", "house_plant", "hurricane", "ice_cream",
    "jacket", "jail", "kangaroo", "key", "keyboard", "knee", "knife", "ladder", "lantern", "laptop", "leaf", "leg",
    "light_bulb", "lighter", "lighthouse", "lightning", "line", "lion", "lipstick", "lobster", "lollipop",
    "mailbox", "map", "marker", "matches", "megaphone", "mermaid", "microphone", "microwave", "monkey", "moon",
    "mosquito", "motorbike", "mountain", "mouse", "moustache", "mouth", "mug", "mushroom", "nail", "necklace",
    "nose", "ocean", "octagon", "octopus", "onion", "oven", "owl", "paintbrush", "paint_can", "palm_tree", "panda",
    "pants", "paper_clip", "parachute", "parrot", "passport", "peanut", "pear", "peas", "pencil", "penguin",
    "piano", "pickup_truck", "picture_frame", "pig", "pillow", "pineapple", "pizza", "pliers", "police_car", "pond",
    "pool", "popsicle", "postcard", "potato", "power_outlet", "purse", "rabbit", "raccoon", "radio", "rain",
    "rainbow", "rake", "remote_control", "rhinoceros", "rifle", "river", "roller_coaster", "rollerskates",
    "sailboat", "sandwich", "saw", "saxophone", "school_bus", "scissors", "scorpion", "screwdriver", "sea_turtle",
    "see_saw", "shark", "sheep", "shoe", "shorts", "shovel", "sink", "skateboard", "skull", "skyscraper",
    "sleeping_bag", "smiley_face", "snail", "snake", "snorkel", "snowflake", "snowman", "soccer_ball", "sock",
    "speedboat", "spider", "spoon", "spreadsheet", "square", "squiggle", "squirrel", "stairs", "star", "steak",
    "stereo", "stethoscope", "stitches", "stop_sign", "stove", "strawberry", "streetlight", "string_bean",
    "submarine", "suitcase", "sun", "swan", "sweater", "swing_set", "sword", "syringe", "table", "teapot",
    "teddy-bear", "telephone", "television", "tennis_racquet", "tent", "The_Eiffel_Tower",
    "The_Great_Wall_of_China", "The_Mona_Lisa", "tiger", "toaster", "toe", "toilet", "tooth", "toothbrush",
    "toothpaste", "tornado", "tractor", "traffic_light", "train", "tree", "triangle", "trombone", "truck",
    "trumpet", "t-shirt", "umbrella", "underwear", "van", "vase", "violin", "washing_machine", "watermelon",
    "waterslide", "whale", "wheel", "windmill", "wine_bottle", "wine_glass", "wristwatch", "yoga", "zebra",
    "zigzag",
)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# STL-10 label (class_names.txt order) -> CIFAR-10 label; None drops the image (monkey has no CIFAR class).
STL10_TO_CIFAR10 = (0, 2, 1, 3, 4, 5, 7, None, 8, 9)

# FMoW categories in WILDS label order.
FMOW_CATEGORIES = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park",
    "aquaculture", "archaeological_site", "barn", "border_checkpoint",
    "burial_site", "car_dealership", "construction_site", "crop_field",
    "dam", "debris_or_rubble", "educational_institution", "electric_substation",
    "factory_or_powerplant", "fire_station", "flooded_road", "fountain",
    "gas_station", "golf_course", "ground_transportation_station", "helipad",
    "hospital", "impoverished_settlement", "interchange", "lake_or_pond",
    "lighthouse", "military_facility", "multi-unit_residential", "nuclear_powerplant",
    "office_building", "oil_or_gas_facility", "park", "parking_lot_or_garage",
    "place_of_worship", "police_station", "port", "prison",
    "race_track", "railway_bridge", "recreational_facility", "road_bridge",
    "runway", "shipyard", "shopping_mall", "single-unit_residential",
    "smokestack", "solar_farm", "space_facility", "stadium",
    "storage_tank", "surface_mine", "swimming_pool", "toll_booth",
    "tower", "tunnel_opening", "waste_disposal", "water_treatment_facility",
    "wind_farm", "zoo",
)

# FMoW regions as WILDS names them (`country_code_mapping.csv`'s region column; unmapped countries are "Other").
FMOW_REGIONS = ("Asia", "Europe", "Africa", "Americas", "Oceania", "Other")
