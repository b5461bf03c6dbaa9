import AvatarMaker from "@/components/AvatarMaker";

export default function Home() {
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to the avatar maker
      </a>
      <header className="masthead">
        {/* The brand art comes from the node pack (npm run brand); its top band carries the ETHMumbai title. */}
        <img className="masthead__banner" src="/brand/ethmumbai_sunset.png" alt="ETHMumbai" />
      </header>
      <main id="main" className="page">
        <div className="intro">
          <h1>Avatar maker</h1>
          <p>Turn a selfie into your ETHMumbai avatar: drawn in the event&rsquo;s style, on its Mumbai skyline.</p>
        </div>
        <AvatarMaker />
      </main>
      <footer className="footer">
        <p>ETHMumbai · your photo is used only to make your avatar.</p>
      </footer>
    </>
  );
}
