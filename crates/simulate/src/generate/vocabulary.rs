//! The lists generated values are drawn from: shops, warehouses, goods, carriers, places, people, texts.

/// (shop_no, shop_name)
pub const SHOPS: &[(&str, &str)] = &[
    ("tmall01", "旺店通旗舰店"),
    ("tmall02", "天猫 · 官方店"),
    ("jd01", "京东自营旗舰店"),
    ("pdd01", "拼多多专营店"),
    ("dy01", "抖音小店"),
    ("xhs01", "小红书店铺"),
    ("md-hz01", "杭州西湖门店"),
];

/// (warehouse_no, warehouse_name)
pub const WAREHOUSES: &[(&str, &str)] = &[
    ("CK001", "华东仓"),
    ("CK002", "北京一号仓"),
    ("CK003", "华南中心仓"),
    ("CK004", "成都退货仓"),
    ("WH-SZ01", "深圳保税仓"),
    ("WH-WH01", "武汉中转仓"),
];

/// A good as the ERP knows it: the fields of a detail line that name it agree.
#[derive(Clone, Copy)]
pub(super) struct Good {
    pub(super) goods_no: &'static str,
    pub(super) spec_no: &'static str,
    pub(super) name: &'static str,
    pub(super) spec_name: &'static str,
    pub(super) brand: &'static str,
    pub(super) class: &'static str,
    pub(super) unit: &'static str,
    pub(super) barcode: &'static str,
}

pub(super) const GOODS: &[Good] = &[
    Good {
        goods_no: "G1001",
        spec_no: "LT-500G-M",
        name: "拿铁咖啡豆 500g",
        spec_name: "500g 中度烘焙",
        brand: "隅田川",
        class: "咖啡豆",
        unit: "袋",
        barcode: "6901234500017",
    },
    Good {
        goods_no: "G1001",
        spec_no: "LT-1KG-D",
        name: "拿铁咖啡豆 1kg",
        spec_name: "1kg 深度烘焙",
        brand: "隅田川",
        class: "咖啡豆",
        unit: "袋",
        barcode: "6901234500024",
    },
    Good {
        goods_no: "G2003",
        spec_no: "CUP-350-W",
        name: "陶瓷马克杯 350ml",
        spec_name: "白色",
        brand: "摩登主妇",
        class: "杯具",
        unit: "个",
        barcode: "6923450612345",
    },
    Good {
        goods_no: "G3010",
        spec_no: "TEA-ML-100",
        name: "茉莉花茶 100g 罐装",
        spec_name: "100g",
        brand: "张一元",
        class: "茶叶",
        unit: "罐",
        barcode: "6921234567892",
    },
    Good {
        goods_no: "G4021",
        spec_no: "TS-M-BK-XL",
        name: "纯棉圆领T恤 男款",
        spec_name: "黑色 XL",
        brand: "优衣库",
        class: "服装",
        unit: "件",
        barcode: "4550182345678",
    },
    Good {
        goods_no: "G5002",
        spec_no: "MSK-50",
        name: "一次性医用口罩 50只/盒",
        spec_name: "50只/盒",
        brand: "稳健",
        class: "日用",
        unit: "盒",
        barcode: "6953081234567",
    },
    Good {
        goods_no: "G6008",
        spec_no: "NUT-750",
        name: "每日坚果 750g (30袋)",
        spec_name: "750g",
        brand: "三只松鼠",
        class: "休闲零食",
        unit: "箱",
        barcode: "6971234560018",
    },
    Good {
        goods_no: "G7001",
        spec_no: "SP-WTR-24",
        name: "天然矿泉水 550ml*24瓶",
        spec_name: "550ml*24",
        brand: "农夫山泉",
        class: "饮料",
        unit: "箱",
        barcode: "6921168509256",
    },
];

/// (code, name, tracking number prefix)
pub(super) const CARRIERS: &[(&str, &str, &str)] = &[
    ("SF", "顺丰速运", "SF"),
    ("YTO", "圆通速递", "YT"),
    ("ZTO", "中通快递", "78"),
    ("STO", "申通快递", "77"),
    ("YUNDA", "韵达快递", "43"),
    ("JD", "京东物流", "JDV"),
    ("EMS", "中国邮政EMS", "11"),
    ("JTSD", "极兔速递", "JT"),
];

/// A real place: an address's province, city, district, their codes, zip and a street.
#[derive(Clone, Copy)]
pub(super) struct Place {
    pub(super) province: &'static str,
    pub(super) city: &'static str,
    pub(super) district: &'static str,
    pub(super) province_code: u32,
    pub(super) city_code: u32,
    pub(super) district_code: u32,
    pub(super) zip: &'static str,
    pub(super) street: &'static str,
}

pub(super) const PLACES: &[Place] = &[
    Place {
        province: "浙江省",
        city: "杭州市",
        district: "西湖区",
        province_code: 330000,
        city_code: 330100,
        district_code: 330106,
        zip: "310012",
        street: "文三路",
    },
    Place {
        province: "上海",
        city: "上海市",
        district: "浦东新区",
        province_code: 310000,
        city_code: 310100,
        district_code: 310115,
        zip: "200120",
        street: "张江路",
    },
    Place {
        province: "北京",
        city: "北京市",
        district: "朝阳区",
        province_code: 110000,
        city_code: 110100,
        district_code: 110105,
        zip: "100020",
        street: "建国路",
    },
    Place {
        province: "广东省",
        city: "深圳市",
        district: "南山区",
        province_code: 440000,
        city_code: 440300,
        district_code: 440305,
        zip: "518057",
        street: "科技园南路",
    },
    Place {
        province: "广东省",
        city: "广州市",
        district: "天河区",
        province_code: 440000,
        city_code: 440100,
        district_code: 440106,
        zip: "510630",
        street: "天河路",
    },
    Place {
        province: "江苏省",
        city: "南京市",
        district: "鼓楼区",
        province_code: 320000,
        city_code: 320100,
        district_code: 320106,
        zip: "210008",
        street: "中山北路",
    },
    Place {
        province: "四川省",
        city: "成都市",
        district: "武侯区",
        province_code: 510000,
        city_code: 510100,
        district_code: 510107,
        zip: "610041",
        street: "人民南路",
    },
    Place {
        province: "湖北省",
        city: "武汉市",
        district: "洪山区",
        province_code: 420000,
        city_code: 420100,
        district_code: 420111,
        zip: "430070",
        street: "珞喻路",
    },
    Place {
        province: "山东省",
        city: "青岛市",
        district: "市南区",
        province_code: 370000,
        city_code: 370200,
        district_code: 370202,
        zip: "266071",
        street: "香港中路",
    },
    Place {
        province: "新疆维吾尔自治区",
        city: "乌鲁木齐市",
        district: "天山区",
        province_code: 650000,
        city_code: 650100,
        district_code: 650102,
        zip: "830002",
        street: "解放南路",
    },
];

pub(super) const PEOPLE: &[&str] = &[
    "张伟",
    "王芳",
    "李娜",
    "刘洋",
    "陈静",
    "杨磊",
    "赵敏",
    "黄晓明",
    "周杰",
    "吴婷",
    "徐丽",
    "孙强",
    "欧阳娜娜",
    "马超",
    "朱琳",
];
pub(super) const NICKS: &[&str] = &[
    "tb_88234120",
    "小鱼儿2019",
    "jd_4a7c2e91b",
    "快乐的小猪",
    "t**3",
    "王**",
    "sunny_day",
    "喵星人不吃鱼",
    "pdd_13812",
    "老李头",
];
pub(super) const REMARKS: &[&str] = &[
    "请尽快发货",
    "包装破损,已拍照",
    "客户要求改地址：杭州市西湖区文三路 90 号",
    "赠品已随包裹寄出!",
    "顺丰到付，谢谢~",
    "质量问题，换货处理。",
    "不要放快递柜，放门卫",
    "急！！！明天要用",
    "买家已确认收货,同意退款",
    "退回商品已验收 (外包装完好)",
    "补发 1 件",
    "old order; re-sent",
];
pub(super) const EMOJI_REMARKS: &[&str] = &["谢谢亲 🙏", "送人的，包装好看点 🎁", "好评返现 😀"];
pub(super) const REASONS: &[&str] =
    &["七天无理由退货", "质量问题", "发错货", "少件/漏发", "不想要了", "商品破损", "尺码不合适", "其他"];
pub(super) const ERRORS: &[&str] = &["库存不足", "货品不存在", "仓库未授权", "超时未回传"];
pub(super) const FLAG_NAMES: &[&str] = &["加急", "赠品单", "预售", "大客户"];
pub(super) const LABELS: &[&str] = &["退货入库", "销售出库", "普通订单", "换货", "补发", "线上", "默认"];
pub(super) const INVOICE_TITLES: &[&str] = &["杭州某某科技有限公司", "个人", "上海云端网络科技有限公司"];
pub(super) const INVOICE_CONTENTS: &[&str] = &["明细", "办公用品", "食品"];
pub(super) const PRINTERS: &[&str] = &["仓库1号打印机", "HP LaserJet M1005", "快递单打印机-B"];
pub(super) const ACCOUNT_NAMES: &[&str] = &["支付宝主账户", "备用账户", "京东钱包", "招商银行基本户"];
pub(super) const SALE_CHANNELS: &[&str] = &["天猫", "淘宝", "京东", "线下门店"];
pub(super) const SALE_SOURCES: &[&str] = &["APP", "PC", "小程序"];
/// wdt platform ids: 0 线下, 1 淘宝, 3 京东, 6 拼多多 (a few of them), 127 其它.
pub(super) const PLATFORMS: &[u32] = &[1, 1, 1, 3, 3, 6, 0, 127];
pub(super) const WORDS: &[&str] =
    &["旗舰店", "华东仓", "退货", "拿铁", "测试", "天猫", "京东", "盒马", "c-test", "SKU", "备注 ✓"];
